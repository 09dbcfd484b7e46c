#include "config.h"

#include "cursor.h"
