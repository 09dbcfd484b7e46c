#include "config.h"

#include "auth.h"
