# moat build. `make` builds build/moat (release); `make test` builds with sanitizers and runs
# every test; `make run` starts the demo. See README.md.

CC      ?= cc
PKGS    := openssl jansson ldns libnghttp2 zlib libbrotlienc libzstd
WARN    := -std=c17 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
           -Wno-unused-parameter
DEFS    := -D_GNU_SOURCE -DMOAT_VERSION=\"$(shell cat VERSION 2>/dev/null || echo 0.0.0)\"
INC     := -Isrc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -ljansson -lldns -lnghttp2 -lz -lbrotlienc -lzstd)
LIBS    := $(PKG_LIBS) -lpthread

REL_CFLAGS  := -O2 -g $(WARN) $(DEFS) $(INC) $(PKG_CFLAGS) -fstack-protector-strong -D_FORTIFY_SOURCE=2
SAN_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined -DMOAT_DEBUG $(WARN) $(DEFS) $(INC) $(PKG_CFLAGS)
SAN_LDFLAGS := -fsanitize=address,undefined

SRCS     := $(shell find src -name '*.c' ! -path 'src/cli/main.c' | sort)
HDRS     := $(shell find src -name '*.h')
REL_OBJS := $(SRCS:src/%.c=build/rel/%.o)
SAN_OBJS := $(SRCS:src/%.c=build/san/%.o)
UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/san/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all san run test unit fuzz format check-style clean deps bench

all: build/moat

build/moat: build/rel/cli/main.o build/rel/libmoat.a
	$(CC) -o $@ $^ $(LIBS)

build/rel/libmoat.a: $(REL_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/rel/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c -o $@ $<

san: build/san/moat $(UNIT_BINS)

build/san/moat: build/san/cli/main.o build/san/libmoat.a
	$(CC) $(SAN_LDFLAGS) -o $@ $^ $(LIBS)

build/san/libmoat.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/san/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c -o $@ $<

build/san/tests/%: tests/unit/%.c tests/unit/test.h build/san/libmoat.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -Itests/unit $(SAN_LDFLAGS) -o $@ $< build/san/libmoat.a $(LIBS)

# libFuzzer targets: clang, each target compiled with the sources it needs (listed in the
# target's `// fuzz-sources: a.c b.c` lines at its top).
build/fuzz/%: tests/fuzz/%.c $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined $(DEFS) -DMOAT_DEBUG $(INC) $(PKG_CFLAGS) \
	  -o $@ $< $$(sed -n 's,^// fuzz-sources: *,,p' $<) $(LIBS)

fuzz: $(FUZZ_BINS)

run: deps build/moat
	./build/moat serve --demo

test: deps
	@./scripts/test-all

deps:
	@./scripts/install-deps --if-missing

format:
	clang-format -i $(SRCS) $(HDRS) src/cli/main.c $(UNIT_SRCS) $(FUZZ_SRCS)

clean:
	rm -rf build
