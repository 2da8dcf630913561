# Tests: `make test` builds everything and runs unit tests (plain and under
# ASan+UBSan), then the integration tests that boot real guests.

include tests/plugins/plugins.mk
include tests/unit/unit.mk
include tests/fuzz/fuzz.mk

.PHONY: test integration
test: all guest test-plugins
	$(Q)$(MAKE) --no-print-directory unit unit-asan fuzz
	$(Q)tests/integration/run.sh

integration: all test-guests
	$(Q)tests/integration/run.sh

# Applications end to end (tests/apps/): PostgreSQL built, started in the
# guest, packed and queried. Long where the guest kernel is emulated (its
# server start takes minutes there): not part of `make test`.
.PHONY: test-apps
test-apps: all guest
	$(Q)TEST_FILES="tests/apps/*.test.sh" tests/integration/run.sh
