# coding_fdw: PostgreSQL foreign-data wrapper and sync engine for Coding (coding.net)
#
# Build with PGXS:  make && make install   (PG_CONFIG=... selects the server)
# Tests:            see README.md ("Running the tests"); `make installcheck`
#                   needs the simulated Coding server running (test/run_tests.sh does it).

MODULE_big = coding_fdw
OBJS = \
	src/coding_client.o \
	src/convert.o \
	src/fdw.o \
	src/functions.o \
	src/json_fast.o \
	src/options.o \
	src/pushdown.o \
	src/ratelimit.o \
	src/sync_worker.o \
	src/webhook_listener.o

EXTENSION = coding_fdw
DATA = coding_fdw--0.1.sql
PGFILEDESC = "coding_fdw - foreign-data wrapper for Coding (coding.net)"

REGRESS = options import columns pushdown errors cancel secrets test_connection sync analyze
REGRESS_OPTS = --load-extension=coding_fdw --encoding=UTF8

PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags libcjson libcurl libmicrohttpd 2>/dev/null)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
# json_fast.cpp is C++ (simdjson): C++17, warnings on, and the C++ runtime
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Wno-unused-parameter
BITCODE_CXXFLAGS += -std=c++17
SHLIB_LINK = -lcurl -lcjson -lmicrohttpd -lsimdjson -lstdc++

EXTRA_CLEAN = results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every file includes the shared header: rebuild all when it changes
$(OBJS): src/coding_fdw.h src/json_fast.h
