# The two commands a newcomer needs: `make run` and `make test`.
STATE ?= state
CARGO ?= cargo
BIN := target/debug/hpki-ca

.PHONY: setup build run ceremony test lint bench bench-crl bench-ocsp bench-latency bench-issuance fuzz clean-state

setup:            ## install softhsm2, opensc, openssl if missing (Debian, as root)
	@scripts/setup.sh

build: setup
	$(CARGO) build --bin hpki-ca

ceremony: build   ## create the SoftHSM token and the CA keys/certificates under $(STATE)
	hsm-config/init-token.sh $(STATE)
	$(BIN) --state-dir $(STATE) ceremony --yes

run: ceremony     ## run the whole CA locally on loopback
	$(BIN) --state-dir $(STATE) run

test: setup       ## every test: unit, SoftHSM and end-to-end with openssl
	scripts/test.sh

bench: setup      ## every benchmark (bounded in time); each runs even when one before missed its target, and the exit status says whether any did
	@status=0; for b in bench-crl bench-ocsp bench-latency bench-issuance; do $(MAKE) --no-print-directory $$b || status=1; done; exit $$status

bench-crl: setup  ## build + sign CRLs of 10k, 100k, 1M entries: time and peak memory
	$(CARGO) bench -p crl --bench crl_build

bench-latency: setup ## gRPC p50/p99 at 1, 8 (and 64) clients against hpki-ca run, beside one SoftHSM signature
	$(CARGO) bench --bench latency

bench-issuance: setup ## cards/s and p50/p99 at 1, 8, 64 RA clients against hpki-ca run, beside the raw SoftHSM signing rate (env STORE=sled, the default)
	$(CARGO) bench --bench issuance

bench-ocsp: setup ## OCSP: criterion hot path, then the load benchmark vs openssl ocsp and an nginx ceiling
	$(CARGO) bench -p ocsp --features bench --bench ocsp_hot_path
	scripts/bench-ocsp.sh

fuzz: setup       ## each cargo-fuzz target for FUZZ_SECONDS (default 20); stable Rust via RUSTC_BOOTSTRAP
	scripts/fuzz.sh

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-state:      ## forget the local CA (keys, token, database)
	rm -rf $(STATE)
