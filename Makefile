# vifnet: `make demo` and `make test` are the quick start (as root, on Debian 12).
# Everything here works inside network namespaces it creates; the host's own network
# is never touched.

PREFIX    ?= /usr/local
SBINDIR   ?= $(PREFIX)/sbin
LIBEXEC   ?= $(PREFIX)/lib/vifnet
MANDIR    ?= $(PREFIX)/share/man
UNITDIR   ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
XEN_SCRIPTS ?= $(SYSCONFDIR)/xen/scripts
MODES      = $(SYSCONFDIR)/vifnet/modes
CARGO     ?= cargo
# Release builds link statically: with no dynamic loader to run, vifnet starts about
# 0.5 ms sooner, a sixth of a hotplug call. (With --target, RUSTFLAGS leaves build
# scripts and proc-macros alone.)
HOST       = $(shell rustc -vV | sed -n 's/^host: //p')
STATIC    := RUSTFLAGS="-C target-feature=+crt-static"
BIN        = target/$(HOST)/release/vifnet
# Debian packages the tests and the demo use; and the tests alone (man page and package lint).
DEB_PKGS  := nftables iproute2 iputils-ping dnsmasq-base udhcpc
TEST_PKGS := mandoc groff-base lintian bird2
MULTI     := network-bridge vif-bridge network-route vif-route network-nat vif-nat
# Beside Xen's scripts rather than instead of them: `script=vifnet-bridge`.
VIF_SCRIPTS := vifnet-bridge vifnet-route vifnet-nat
# Names route protocol 118 (our routes), so that `ip route` shows `proto vifnet`.
RT_PROTOS  = $(SYSCONFDIR)/iproute2/rt_protos.d/vifnet.conf
MODE_FILES := bridge.toml route.toml nat.toml
UNITS      := vifnet@.service vifnet-reload.service vifnet-watch.service
UNIT_DROPINS := vifnet@route.service.d/watch.conf
INSTALL_DIRS = $(SBINDIR) $(LIBEXEC) $(MANDIR)/man8 $(MANDIR)/man5 $(MODES) $(UNITDIR) $(dir $(RT_PROTOS))

.PHONY: all build deps test-deps install-missing demo test test-quick test-unit test-package lanes fuzz bench bench-deps deb man install install-xen-scripts uninstall clean

all: build

build:
	$(STATIC) $(CARGO) build --release --locked --target $(HOST)

# Installs what is missing (root): the Debian packages, and checks for a Rust toolchain.
deps:
	@command -v $(CARGO) >/dev/null || { echo "vifnet: cargo (Rust >= 1.85) is needed: https://rustup.rs, or apt-get install cargo on Debian 13"; exit 1; }
	@$(MAKE) -s install-missing PKGS="$(DEB_PKGS)"

test-deps: deps
	@$(MAKE) -s install-missing PKGS="$(TEST_PKGS)"

# No package's daemon is started on this host (bird2 would run BIRD on its network): a
# policy-rc.d of our own says no while apt-get runs, unless the host has one already.
install-missing:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  own=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
	  [ -n "$$own" ] && rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# Bridge, route, then nat mode, end to end with stand-in guests, each in namespaces its
# run creates and removes: examples/bridge (uplink takeover), examples/route-29 (a routed
# /29 with its gateway on dom0), examples/nat-cluster (four guests behind dom0 that lease
# their addresses from vifnet's dnsmasq and resolve each other's names). Pings to the lan
# host (both ways where it can reach the guests), and a spoofed source dropped.
demo: deps build
	@sum=$$(mktemp /tmp/vifnet-demo.XXXXXX) && trap 'rm -f "$$sum"' EXIT && set -e && \
	$(BIN) setup --simulate --prefix vfbr$$$$ --modes-dir examples/bridge --summary "$$sum" \
	  --xend-config examples/bridge/xend-config.sxp examples/bridge/web.cfg examples/bridge/db.cfg && \
	$(BIN) setup --simulate --prefix vfrt$$$$ --modes-dir examples/route-29 --summary "$$sum" \
	  --xend-config examples/route-29/xend-config.sxp examples/route-29/web.cfg examples/route-29/mail.cfg && \
	$(BIN) setup --simulate --prefix vfnat$$$$ --modes-dir examples/nat-cluster --summary "$$sum" \
	  --xend-config examples/nat-cluster/xend-config.sxp examples/nat-cluster/node1.cfg \
	  examples/nat-cluster/node2.cfg examples/nat-cluster/node3.cfg examples/nat-cluster/node4.cfg

# Everything: unit tests, the namespace tests on this kernel (as root), then the VM lanes:
# Debian 12's kernel, and a real Xen 4.17 toolstack with PV guests (tests/lanes/).
test: test-quick test-package lanes

# Unit and namespace tests on this machine's kernel: the fast loop while working.
test-quick: test-deps
	$(CARGO) test --locked

# The .deb: its contents, lintian (installed if missing), and install, a guest, remove and
# purge under the real dpkg in a root of the test's own (tests/package.rs).
test-package: test-deps deb
	VIFNET_DEB=$(CURDIR)/$(DEB) $(CARGO) test --locked --test package

# man/vifnet.8 and man/vifnet-modes.5 from man/*.in, the clap definitions and the shipped
# mode files (tests/man.rs checks that the committed pages are up to date and lint-clean).
man:
	VIFNET_WRITE_MAN=1 $(CARGO) test --locked --test man the_committed_pages

# Unit tests only: no root, no namespaces.
test-unit:
	$(CARGO) test --locked --lib

# The VM lanes alone (the first run fetches ~100 MB of Debian packages into
# /var/tmp/vifnet-lanes); LANES=kernel or LANES=xen runs one.
lanes: deps
	VIFNET_DEB=$(if $(wildcard $(DEB)),$(CURDIR)/$(DEB)) tests/lanes/run.sh $(LANES)

# The parsers of outside input (xend-config.sxp, xl.conf, domain configs, vif specs, mode
# files, xenstore replies) fuzzed for FUZZ_SECS each; `make test` gives them 3 s each.
# VIFNET_FUZZ_SEED=<seed> replays a run; failing inputs land in target/fuzz-crashes/.
FUZZ_SECS ?= 180
fuzz:
	VIFNET_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --release --locked --test fuzz -- --nocapture

# Per-vif online/offline latency, memory, CPU and children beside 0 to 4000 guests, bursts,
# start/stop, and the ip+nft floor, in every mode (root; ~10 min). Figures in target/bench/:
# hotplug.md, hotplug.csv and latency.png (drawn with gnuplot, installed if missing).
bench: deps bench-deps
	$(STATIC) $(CARGO) bench --locked --bench hotplug --target $(HOST)

bench-deps:
	@command -v gnuplot >/dev/null || { echo "installing: gnuplot-nox"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; }

# Every path is under $(DESTDIR), for a staged install (the .deb is built that way).
# The directories it creates are listed in $(LIBEXEC)/created-dirs, for uninstall.
install: build
	new=$$(for d in $(INSTALL_DIRS); do p=$(DESTDIR)$$d; while [ -n "$$p" ] && [ ! -d "$$p" ]; do echo "$$p"; p=$${p%/*}; done; done); \
	  install -d $(DESTDIR)$(LIBEXEC) && printf '%s\n' $$new | sed '/^$$/d' | sort -u - $$(ls $(DESTDIR)$(LIBEXEC)/created-dirs 2>/dev/null) > $(DESTDIR)$(LIBEXEC)/.created-dirs && \
	  mv $(DESTDIR)$(LIBEXEC)/.created-dirs $(DESTDIR)$(LIBEXEC)/created-dirs
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/vifnet
	for n in $(MULTI) $(VIF_SCRIPTS); do ln -sfr $(DESTDIR)$(SBINDIR)/vifnet $(DESTDIR)$(LIBEXEC)/$$n; done
	install -D -m 0644 man/vifnet.8 $(DESTDIR)$(MANDIR)/man8/vifnet.8
	install -D -m 0644 man/vifnet-modes.5 $(DESTDIR)$(MANDIR)/man5/vifnet-modes.5
	install -d $(DESTDIR)$(MODES)
	for m in $(MODE_FILES); do [ -e $(DESTDIR)$(MODES)/$$m ] || install -m 0644 modes/$$m $(DESTDIR)$(MODES)/$$m; done
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do sed 's|@SBINDIR@|$(SBINDIR)|' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; done
	for d in $(UNIT_DROPINS); do install -D -m 0644 systemd/$$d $(DESTDIR)$(UNITDIR)/$$d; done
	install -D -m 0644 /dev/null $(DESTDIR)$(RT_PROTOS)
	echo '118 vifnet' > $(DESTDIR)$(RT_PROTOS)

# Points Xen's own script names in $(DESTDIR)$(XEN_SCRIPTS) at vifnet (Xen's kept aside by
# dpkg-divert, or as <name>.xen), and adds vifnet-bridge, vifnet-route and vifnet-nat
# beside them (`script=vifnet-route`, or xl.conf's vif.default.script).
install-xen-scripts: install
	@[ -d $(DESTDIR)$(XEN_SCRIPTS) ] || { echo "vifnet: $(DESTDIR)$(XEN_SCRIPTS) does not exist: is Xen installed? (XEN_SCRIPTS=... names another)"; exit 1; }
	$(DESTDIR)$(SBINDIR)/vifnet install-xen-scripts --root $(DESTDIR)/ --dir $(XEN_SCRIPTS) --target $(SBINDIR)/vifnet \
	  $(if $(DESTDIR),--no-divert)

# Removes exactly what install and install-xen-scripts made (mode files only while they
# are as shipped), the directories they created once empty, and gives Xen's scripts back.
uninstall:
	if [ -x $(DESTDIR)$(SBINDIR)/vifnet ] && [ -d $(DESTDIR)$(XEN_SCRIPTS) ]; then \
	  $(DESTDIR)$(SBINDIR)/vifnet uninstall-xen-scripts --root $(DESTDIR)/ --dir $(XEN_SCRIPTS) $(if $(DESTDIR),--no-divert); fi
	for n in $(MULTI) $(VIF_SCRIPTS); do rm -f $(DESTDIR)$(LIBEXEC)/$$n; done
	for m in $(MODE_FILES); do if cmp -s modes/$$m $(DESTDIR)$(MODES)/$$m; then rm -f $(DESTDIR)$(MODES)/$$m; fi; done
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	for d in $(UNIT_DROPINS); do rm -f $(DESTDIR)$(UNITDIR)/$$d; rmdir $$(dirname $(DESTDIR)$(UNITDIR)/$$d) 2>/dev/null || true; done
	rm -f $(DESTDIR)$(SBINDIR)/vifnet $(DESTDIR)$(MANDIR)/man8/vifnet.8 $(DESTDIR)$(MANDIR)/man5/vifnet-modes.5 $(DESTDIR)$(RT_PROTOS)
	rmdir $(DESTDIR)$(MODES) $(DESTDIR)$(SYSCONFDIR)/vifnet 2>/dev/null || true
	if [ -f $(DESTDIR)$(LIBEXEC)/created-dirs ]; then dirs=$$(sort -r $(DESTDIR)$(LIBEXEC)/created-dirs); \
	  rm -f $(DESTDIR)$(LIBEXEC)/created-dirs; for d in $$dirs; do rmdir "$$d" 2>/dev/null || true; done; fi
	rmdir $(DESTDIR)$(LIBEXEC) 2>/dev/null || true

# The Debian package, with dpkg-deb alone: `make install` staged under /usr, the units in
# /lib/systemd/system (bookworm), man pages compressed, examples and README under
# /usr/share/doc/vifnet, the mode files and rt_protos.d as conffiles.
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
DEB       := target/vifnet_$(VERSION)_amd64.deb
DEB_ROOT  := target/deb-root
DOC       := $(DEB_ROOT)/usr/share/doc/vifnet
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
deb: build
	rm -rf $(DEB_ROOT) $(DEB)
	$(MAKE) -s -o build install DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr UNITDIR=/lib/systemd/system
	rm $(DEB_ROOT)/usr/lib/vifnet/created-dirs
	objcopy --remove-section=.comment $(DEB_ROOT)/usr/sbin/vifnet
	gzip -9n $(DEB_ROOT)/usr/share/man/man8/vifnet.8 $(DEB_ROOT)/usr/share/man/man5/vifnet-modes.5
	install -d $(DOC)
	cp -r examples $(DOC)/examples
	install -m 0644 pkg/debian/copyright README.md $(DOC)/
	sed -e 's/@VERSION@/$(VERSION)/' -e "s/@DATE@/$$(date -R -u -d @$(SOURCE_DATE_EPOCH))/" pkg/debian/changelog | gzip -9n > $(DOC)/changelog.gz
	install -d $(DEB_ROOT)/DEBIAN
	install -m 0755 pkg/debian/postinst pkg/debian/prerm pkg/debian/postrm $(DEB_ROOT)/DEBIAN/
	cd $(DEB_ROOT) && find etc -type f | sed 's|^|/|' | sort > DEBIAN/conffiles
	cd $(DEB_ROOT) && find usr lib -type f | sort | xargs md5sum > DEBIAN/md5sums
	sed -e 's/@VERSION@/$(VERSION)/' -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" pkg/debian/control.in > $(DEB_ROOT)/DEBIAN/control
	find $(DEB_ROOT) -type d -exec chmod 0755 {} + && find $(DEB_ROOT) -type f ! -perm -u+x -exec chmod 0644 {} +
	find $(DEB_ROOT) -newermt @$(SOURCE_DATE_EPOCH) -exec touch -h -d @$(SOURCE_DATE_EPOCH) {} +
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB)
	@echo "built $(DEB)"

clean:
	$(CARGO) clean
