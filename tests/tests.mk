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
