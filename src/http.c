#include "config.h"

#include "http.h"
