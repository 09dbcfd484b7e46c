#include "config.h"

#include "redis.h"
