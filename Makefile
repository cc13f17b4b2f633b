# Sluice build. `make` builds build/release/sluice; `make test` runs everything CI runs.
CC       ?= cc
CLANG    ?= clang
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter -Wimplicit-fallthrough
CPPFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -Iinclude
LIBS     := -lpthread -lm -lssl -lcrypto -lz -lsnappy -llz4 -lzstd

SRC      := $(shell find src -name '*.c' ! -path 'src/cli/main.c' | sort)
UNIT_SRC := $(shell find tests/unit -name '*.c' | sort)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

REL_OBJ  := $(SRC:%.c=build/release/%.o)
ASAN_OBJ := $(SRC:%.c=build/asan/%.o)
# -fPIC: the release objects also make up libsluice.so.
REL_CFLAGS  := -O2 -g -fPIC $(WARN)
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined $(WARN)

.PHONY: all release asan unit fuzz test interop clean format format-check gen bench
all: release
release: build/release/sluice build/release/libsluice.so
asan: build/asan/sluice build/asan/unit_tests build/tools/sl_mockcluster

build/release/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -MMD -MP -c $< -o $@
build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

build/release/sluice: $(REL_OBJ) build/release/src/cli/main.o
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS)
# libsluice (include/sluice.h): the release objects, exporting only sluice_* (the map file).
build/release/libsluice.so: $(REL_OBJ) src/lib/libsluice.map
	$(CC) $(REL_CFLAGS) -shared -Wl,--version-script=src/lib/libsluice.map -o $@ $(REL_OBJ) \
	    $(LIBS)
build/asan/sluice: $(ASAN_OBJ) build/asan/src/cli/main.o
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)
build/asan/unit_tests: $(ASAN_OBJ) $(UNIT_SRC:%.c=build/asan/%.o)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)

# Fuzz targets: clang + libFuzzer, with ASan/UBSan. The project sources are compiled once into
# build/fuzz/obj (fuzzer coverage instrumentation without libFuzzer's main) and linked into every
# target. UBSan is fatal here by itself (-fno-sanitize-recover), not only under run_all.sh's
# UBSAN_OPTIONS, so a target run by hand aborts on undefined behaviour and libFuzzer saves the
# input instead of printing a warning and carrying on.
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -Wno-unused-parameter
FUZZ_OBJ    := $(SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p build/fuzz
	$(CLANG) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< \
	    $(FUZZ_OBJ) $(LIBS)
fuzz: $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
# Reached only through the pattern rule above, make would take the shared objects for
# intermediates and delete them after building one target by hand.
.SECONDARY: $(FUZZ_OBJ)

# Benchmarks (bench/, docs/benchmarks.md): release flags; the micro benchmark links the release
# objects like the unit tests link the ASan ones. sl_natsgen only where libnats-dev is installed.
BENCH_BIN := build/bench/sl_loadgen build/bench/sl_mockbroker build/bench/sl_micro \
             build/bench/bench_acl
NATS_OK   := $(shell pkg-config --exists libnats 2>/dev/null && echo 1)
ifeq ($(NATS_OK),1)
BENCH_BIN += build/bench/sl_natsgen
endif
bench: $(BENCH_BIN)
# sl_loadgen --msk-iam signs MSK IAM tokens with Sluice's own code: the few objects it needs.
LOADGEN_OBJ := $(addprefix build/release/src/,auth/sl_msk_iam.o kms/sl_sigv4.o auth/sl_b64.o \
               auth/sl_json.o base/sl_arena.o base/sl_text.o)
build/bench/sl_loadgen: bench/sl_loadgen.c bench/sl_bench.h $(LOADGEN_OBJ)
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -o $@ $< $(LOADGEN_OBJ) -lrdkafka -lpthread -lm -lcrypto
build/bench/sl_mockbroker: bench/sl_mockbroker.c
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -o $@ $< -lrdkafka
build/bench/sl_natsgen: bench/sl_natsgen.c bench/sl_bench.h
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -o $@ $< -lnats -lpthread -lm
build/bench/bench_acl: bench/bench_acl.c $(REL_OBJ)
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -o $@ $< $(REL_OBJ) $(LIBS)
build/bench/sl_micro: bench/sl_micro.c $(REL_OBJ)
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(REL_CFLAGS) -o $@ $< $(REL_OBJ) $(LIBS)

# Test tools (tests/tools): built with the asan target so that run_all.sh's build has them. No
# sanitizers: librdkafka itself is not instrumented, and the tool only drives its mock cluster.
build/tools/sl_mockcluster: tests/tools/sl_mockcluster.c
	@mkdir -p build/tools
	$(CC) $(CPPFLAGS) -O1 -g $(WARN) -o $@ $< $(shell pkg-config --cflags --libs rdkafka)

unit: build/asan/unit_tests
	./build/asan/unit_tests

# Regenerates the protocol codecs from src/proto/defs (output is committed).
gen:
	python3 tools/gen_proto.py src/proto/defs src/proto/gen

test:
	./tests/run_all.sh

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')
format-check:
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
