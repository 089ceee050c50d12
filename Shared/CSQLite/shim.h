#ifndef FEEDBACKLOOP_CSQLITE_SHIM_H
#define FEEDBACKLOOP_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
