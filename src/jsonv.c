#include "config.h"

#include "jsonv.h"
