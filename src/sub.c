#include "config.h"

#include "sub.h"
