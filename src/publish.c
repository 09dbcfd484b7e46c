#include "config.h"

#include "publish.h"
