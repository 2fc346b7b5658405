# The two commands a newcomer needs: `make run` and `make test`.
STATE ?= state
CARGO ?= cargo
BIN := target/debug/hpki-ca

.PHONY: setup build run ceremony test lint clean-state

setup:            ## install softhsm2, opensc, openssl if missing (Debian, as root)
	@scripts/setup.sh

build: setup
	$(CARGO) build --bin hpki-ca

ceremony: build   ## create the SoftHSM token and the CA keys/certificates under $(STATE)
	hsm-config/init-token.sh $(STATE)
	$(BIN) --state-dir $(STATE) ceremony

run: ceremony     ## run the whole CA locally on loopback
	$(BIN) --state-dir $(STATE) run

test: setup       ## every test: unit, SoftHSM and end-to-end with openssl
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-state:      ## forget the local CA (keys, token, database)
	rm -rf $(STATE)
