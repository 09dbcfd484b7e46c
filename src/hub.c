#include "config.h"

#include "hub.h"
