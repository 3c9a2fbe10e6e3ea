# moat build. `make` builds build/moat (release); `make test` builds with sanitizers and runs
# every test; `make run` starts the demo. See README.md.

CC      ?= cc
PKGS    := openssl jansson ldns libnghttp2 zlib libbrotlienc libzstd hiredis
WARN    := -std=c17 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
           -Wno-unused-parameter
DEFS    := -D_GNU_SOURCE -DMOAT_VERSION=\"$(shell cat VERSION 2>/dev/null || echo 0.0.0)\"
INC     := -Isrc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -ljansson -lldns -lnghttp2 -lz -lbrotlienc -lzstd -lhiredis)
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

.PHONY: all san run test unit fuzz format check-style clean deps bench man install uninstall deb

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

# `make fuzz` builds the targets; with FUZZ_SECONDS=N it also runs each for N seconds
# (scripts/fuzz-all: FUZZ_JOBS, FUZZ_TARGETS, FUZZ_MERGE; tests/fuzz/README.md).
fuzz: $(FUZZ_BINS)
	@if [ -n "$(FUZZ_SECONDS)" ]; then FUZZ_SECONDS="$(FUZZ_SECONDS)" ./scripts/fuzz-all; fi

# As root (a fresh machine's shell), the demo is told it may serve as root: moat refuses that
# otherwise (docs/admin.md, "Privileges").
run: deps build/moat
	./build/moat serve --demo $(if $(filter 0,$(shell id -u)),--allow-root)

test: deps
	@./scripts/test-all

deps:
	@./scripts/install-deps --if-missing

# Installing: `make install PREFIX=/usr/local DESTDIR=/tmp/stage` (PREFIX defaults to
# /usr/local; the Debian package uses /usr). The unit, logrotate file and example config are
# installed as written in dist/; their paths say /usr/bin, /etc/moat and /var/lib/moat.
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
MANDIR     := $(PREFIX)/share/man
DOCDIR     := $(PREFIX)/share/doc/moat
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
VERSION_TXT := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

man: build/man/moat.1 build/man/moat.conf.5

build/man/moat.1: scripts/mkman README.md docs/admin.md
	@mkdir -p build/man
	MOAT_VERSION=$(VERSION_TXT) scripts/mkman moat.1 $@

build/man/moat.conf.5: scripts/mkman $(wildcard docs/*.md)
	@mkdir -p build/man
	MOAT_VERSION=$(VERSION_TXT) scripts/mkman moat.conf.5 $@

install: build/moat man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/moat $(DESTDIR)$(SYSCONFDIR)/logrotate.d \
	  $(DESTDIR)$(UNITDIR)
	install -m 0755 build/moat $(DESTDIR)$(BINDIR)/moat
	install -m 0644 build/man/moat.1 $(DESTDIR)$(MANDIR)/man1/moat.1
	install -m 0644 build/man/moat.conf.5 $(DESTDIR)$(MANDIR)/man5/moat.conf.5
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 dist/moat.service $(DESTDIR)$(UNITDIR)/moat.service
	install -m 0644 dist/moat.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/moat
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/moat/moat.conf ]; then \
	  install -m 0644 dist/moat.conf $(DESTDIR)$(SYSCONFDIR)/moat/moat.conf; \
	else echo "kept $(DESTDIR)$(SYSCONFDIR)/moat/moat.conf (yours)"; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/moat $(DESTDIR)$(MANDIR)/man1/moat.1 \
	  $(DESTDIR)$(MANDIR)/man5/moat.conf.5 $(DESTDIR)$(UNITDIR)/moat.service \
	  $(DESTDIR)$(SYSCONFDIR)/logrotate.d/moat
	rm -rf $(DESTDIR)$(DOCDIR)

# `make deb`: the Debian package (debian/, docs/packaging.md), built in a copy of the tree
# under build/deb/ (dpkg-buildpackage writes to the parent of the tree it builds), so that
# build/deb/moat_<version>-1_<arch>.deb is all it leaves. The test suite is not run.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE := build/deb/moat_$(VERSION_TXT)-1_$(DEB_ARCH).deb

deb:
	rm -rf build/deb
	mkdir -p build/deb/moat-$(VERSION_TXT)
	tar -cf - --exclude=./build --exclude=./.git . | tar -xf - -C build/deb/moat-$(VERSION_TXT)
	cd build/deb/moat-$(VERSION_TXT) && DEB_BUILD_OPTIONS="nocheck parallel=2" \
	  dpkg-buildpackage -b -us -uc
	rm -rf build/deb/moat-$(VERSION_TXT)
	@test -f $(DEB_FILE) && echo "deb: $(DEB_FILE)"

format:
	clang-format -i $(SRCS) $(HDRS) src/cli/main.c $(UNIT_SRCS) $(FUZZ_SRCS)

clean:
	rm -rf build
