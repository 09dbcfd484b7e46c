#include "config.h"

#include "history.h"
