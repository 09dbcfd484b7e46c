#include "config.h"

#include "envelope.h"
