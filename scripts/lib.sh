# Shared by scripts/run and scripts/test: find or start the services Clarion needs, installing
# Debian packages when they are missing and we may (root with apt-get), and otherwise saying
# exactly what to install.

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
    say "installing $* (Debian packages)..."
    if [ -z "${CLARION_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        export CLARION_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

require_cargo() {
    command -v cargo >/dev/null 2>&1 && return
    die "cargo is not on PATH: install the Rust toolchain (https://rustup.rs, or 'apt-get install cargo' for Debian's), then run this again"
}

# redis_answers HOST PORT: true when a Redis server answers PING there.
redis_answers() {
    local reply=""
    { exec 9<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&9
    read -r -t 2 reply <&9 || true
    exec 9<&- 9>&-
    [[ "$reply" == +PONG* ]]
}

port_open() { { exec 8<>"/dev/tcp/$1/$2"; } 2>/dev/null && exec 8<&- 8>&-; }

# ensure_redis DATA_DIR: a Redis on 127.0.0.1:6379, started (with append-only persistence,
# files under DATA_DIR) when none answers, installed first when missing.
ensure_redis() {
    local dir="$1"
    redis_answers 127.0.0.1 6379 && return
    if ! command -v redis-server >/dev/null 2>&1; then
        if can_apt; then
            apt_install redis-server
        else
            die "no Redis answers on 127.0.0.1:6379 and redis-server is not installed: run 'sudo apt-get install redis-server' (or start a Redis there), then run this again"
        fi
    fi
    mkdir -p "$dir"
    say "starting redis-server on 127.0.0.1:6379 (data in $dir)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --dir "$(cd "$dir" && pwd)" \
        --appendonly yes --logfile "$(cd "$dir" && pwd)/redis.log" >&2 || die "redis-server did not start"
    for _ in $(seq 50); do
        redis_answers 127.0.0.1 6379 && return
        sleep 0.1
    done
    die "redis-server started but does not answer on 127.0.0.1:6379; see $dir/redis.log"
}

# ensure_schemathesis VENV VERSION: schemathesis VERSION in a Python virtual environment at
# VENV (created with the machine's python3, so its own Python stays clean), installed from
# PyPI when missing or of another version. Quick when already there.
ensure_schemathesis() {
    local venv="$1" version="$2"
    local installed
    installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)"
    [ "$installed" = "$version" ] && [ -x "$venv/bin/schemathesis" ] && return
    command -v python3 >/dev/null 2>&1 || {
        can_apt || die "the API conformance check needs python3: run 'sudo apt-get install python3 python3-venv'"
        apt_install python3 python3-venv
    }
    # Debian splits the venv module (and the pip it bootstraps) into python3-venv.
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        can_apt || die "the API conformance check needs Python's venv module: run 'sudo apt-get install python3-venv'"
        apt_install python3-venv
    fi
    say "installing schemathesis $version into $venv (for the API conformance check)..."
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version" >&2 \
        || die "pip could not install schemathesis $version into $venv (is PyPI reachable?)"
}

# ensure_python_package VENV PACKAGE VERSION: PACKAGE==VERSION from PyPI in a Python virtual
# environment at VENV (created with the machine's python3), for tests that check Clarion's
# output with an independent library. Quick when already there.
ensure_python_package() {
    local venv="$1" package="$2" version="$3"
    local installed
    installed="$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$package'))" 2>/dev/null || true)"
    [ "$installed" = "$version" ] && return
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        can_apt || die "the tests need Python's venv module: run 'sudo apt-get install python3-venv'"
        apt_install python3-venv
    fi
    say "installing $package $version into $venv (for the tests)..."
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" >&2 \
        || die "pip could not install $package $version into $venv (is PyPI reachable?)"
}

# ensure_npm_packages SOURCE DIR: the npm packages that SOURCE/package-lock.json pins (the
# browser tests' playwright-core and axe-core), installed by `npm ci` into DIR/node_modules,
# so nothing lands beside the sources and no browser is downloaded (the tests drive Debian's
# Chromium). Quick when DIR already holds that lock file's packages.
ensure_npm_packages() {
    local source="$1" dir="$2"
    [ -d "$dir/node_modules" ] && cmp -s "$source/package-lock.json" "$dir/installed-lock.json" && return
    say "installing the npm packages of $source into $dir (for the browser tests)..."
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$source/package.json" "$source/package-lock.json" "$dir/"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
        || die "npm ci could not install the packages of $source/package-lock.json into $dir (is the npm registry reachable?)"
    cp "$source/package-lock.json" "$dir/installed-lock.json"
}
