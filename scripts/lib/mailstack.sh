# shellcheck shell=bash
# The body of scripts/mailstack (sourced). Layout under $MAILSTACK_DIR:
#
#   tls/{ca.pem,ca.key,server.pem,server-chain.pem,server.key}   the stack's CA and localhost cert
#   dovecot/{dovecot.conf,users,dovecot.log,run/,state/,sieve/}   run/master.pid is Dovecot's pid
#   postfix/{etc/main.cf,etc/master.cf,spool/,data/,postfix.log}  spool/pid/master.pid is Postfix's
#   mail/<domain>/<user>/Maildir                                 the users' mail
#   cyrus/{imapd.conf,cyrus.conf,sasldb2,config/,spool/,run/,tls/} Cyrus; run/master.pid is its pid
#   cyrus/{root/,debs/}                                          Cyrus's .debs unpacked (not installed)
#   ports.env                                                    the ports the stack was started with
#   .lock                                                        flock: concurrent starts are safe

MS_TEMPLATES="${MS_TEMPLATES:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../mailstack.d" && pwd)}"

ms_init_vars() {
    MS_DIR="${MAILSTACK_DIR:-/tmp/hecto-mailstack}"
    case "$MS_DIR" in /*) ;; *) MS_DIR="$PWD/$MS_DIR" ;; esac
    # Ports: the running stack's (ports.env) win over the environment, so `env` always tells the
    # truth about what is listening.
    if [[ -f "$MS_DIR/ports.env" ]]; then
        # shellcheck disable=SC1091
        . "$MS_DIR/ports.env"
    fi
    MS_IMAP_PORT="${MS_IMAP_PORT:-${MAILSTACK_IMAP_PORT:-10143}}"
    MS_IMAPS_PORT="${MS_IMAPS_PORT:-${MAILSTACK_IMAPS_PORT:-10993}}"
    MS_SMTP_PORT="${MS_SMTP_PORT:-${MAILSTACK_SMTP_PORT:-10025}}"
    MS_SUBMISSION_PORT="${MS_SUBMISSION_PORT:-${MAILSTACK_SUBMISSION_PORT:-10587}}"
    # Submission over implicit TLS (RFC 8314, port 465 in the wild: Naver, Daum, Kakao, Gmail).
    MS_SUBMISSIONS_PORT="${MS_SUBMISSIONS_PORT:-${MAILSTACK_SUBMISSIONS_PORT:-$((MS_SUBMISSION_PORT - 122))}}"
    MS_LMTP_PORT="${MS_LMTP_PORT:-${MAILSTACK_LMTP_PORT:-10024}}"
    # The tests' own OAuth identity provider (scripts/mailstack.d/idp.py), which Dovecot's oauth2
    # passdb asks to introspect tokens: Dovecot's IMAP port + 37 by default (10180).
    MS_IDP_PORT="${MS_IDP_PORT:-${MAILSTACK_IDP_PORT:-$((MS_IMAP_PORT + 37))}}"
    MS_IDP_PID="$MS_DIR/idp/idp.pid"
    MS_PASSWORD="${MAILSTACK_PASSWORD:-hecto-test-pw}"
    MS_DOVECOT_CONF="$MS_DIR/dovecot/dovecot.conf"
    MS_DOVECOT_PID="$MS_DIR/dovecot/run/master.pid"
    MS_POSTFIX_CONF="$MS_DIR/postfix/etc"
    MS_POSTFIX_PID="$MS_DIR/postfix/spool/pid/master.pid"
    MS_USERS="$MS_DIR/dovecot/users"
    # Cyrus defaults to Dovecot's ports + 1000 (11143, 11993): a private stack that sets only the
    # Dovecot/Postfix ports (tests/notify_support) gets a Cyrus of its own that does not collide.
    MS_CYRUS_IMAP_PORT="${MS_CYRUS_IMAP_PORT:-${MAILSTACK_CYRUS_IMAP_PORT:-$((MS_IMAP_PORT + 1000))}}"
    MS_CYRUS_IMAPS_PORT="${MS_CYRUS_IMAPS_PORT:-${MAILSTACK_CYRUS_IMAPS_PORT:-$((MS_IMAPS_PORT + 1000))}}"
    MS_CYRUS_DIR="$MS_DIR/cyrus"
    MS_CYRUS_ROOT="$MS_CYRUS_DIR/root"
    MS_CYRUS_BIN="$MS_CYRUS_ROOT/usr/lib/cyrus/bin"
    MS_CYRUS_CONF="$MS_CYRUS_DIR/imapd.conf"
    MS_CYRUS_PID="$MS_CYRUS_DIR/run/master.pid"
    MS_CYRUS_SASLDB="$MS_CYRUS_DIR/sasldb2"
}

ms_log() { printf 'mailstack: %s\n' "$*" >&2; }
ms_die() {
    printf 'mailstack: error: %s\n' "$*" >&2
    exit 1
}

ms_lock() {
    mkdir -p "$MS_DIR"
    chmod 755 "$MS_DIR"
    exec 9>"$MS_DIR/.lock"
    flock -w 120 9 || ms_die "another mailstack command holds $MS_DIR/.lock for over 120 s"
}

# ---- installation ---------------------------------------------------------------------------

# What the unpacked Cyrus binaries need from apt: the libraries of `apt-cache depends cyrus-common
# cyrus-imapd` (bookworm; not its MTA, adduser, debconf, perl or init-script dependencies), the
# SASL PLAIN/LOGIN and sasldb plugins, and sasl2-bin for saslpasswd2. None conflicts with Dovecot.
MS_CYRUS_PACKAGES="libc6 libclamav12 libcom-err2 libgcc-s1 libical3 libicu72 libjansson4 libkrb5-3
libldap-2.5-0 libpcre3 libpq5 libsasl2-2 libsqlite3-0 libssl3 libstdc++6 libwrap0 libxapian30
libxml2 libzephyr4 zlib1g libsasl2-modules libsasl2-modules-db sasl2-bin"

ms_missing_packages() {
    local missing=()
    [[ -x /usr/sbin/dovecot && -x /usr/lib/dovecot/imap ]] || missing+=(dovecot-imapd)
    [[ -x /usr/lib/dovecot/lmtp ]] || missing+=(dovecot-lmtpd)
    [[ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so && -x /usr/bin/sievec ]] || missing+=(dovecot-sieve)
    [[ -x /usr/sbin/postfix ]] || missing+=(postfix)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v flock >/dev/null 2>&1 || missing+=(util-linux)
    local installed p
    # shellcheck disable=SC2086 # word splitting of the package list is meant
    installed=" $( (dpkg-query -W -f='${db:Status-Status} ${Package}\n' $MS_CYRUS_PACKAGES 2>/dev/null || true) |
        awk '$1 == "installed" {print $2}' | tr '\n' ' ')"
    for p in $MS_CYRUS_PACKAGES; do
        [[ "$installed" == *" $p "* ]] || missing+=("$p")
    done
    printf '%s\n' "${missing[@]}"
}

ms_install() {
    local missing
    mapfile -t missing < <(ms_missing_packages | sed '/^$/d')
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || ms_die "missing packages (${missing[*]}) and not root: install them with apt-get"
    ms_log "installing ${missing[*]}"
    # The packages' own services must not start: the system postfix would take port 25, the
    # system dovecot 143/993 (and sasl2-bin brings saslauthd). policy-rc.d (exit 101) tells
    # invoke-rc.d not to start anything; postfix gets "No configuration", so there is no /etc/postfix/main.cf to start from anyway.
    local policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Only what is missing: installed packages (Dovecot's too) are left as they are.
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >"${TMPDIR:-/tmp}/mailstack-apt.log" 2>&1 || rc=$?
    [[ $policy_added -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || ms_die "apt-get failed (exit $rc); see ${TMPDIR:-/tmp}/mailstack-apt.log"
}

# Cyrus cannot be installed next to Dovecot (cyrus-imapd and dovecot-imapd both provide
# imap-server and conflict), so its two packages are downloaded and unpacked into a private root
# ($MS_CYRUS_ROOT) without running any maintainer script; their libraries come from apt above.
# Compiled-in paths (/usr/lib/cyrus/bin, /etc/imapd.conf) are sidestepped by absolute cmd= paths
# and -C everywhere (cyrus.conf.in), the private libcyrus*.so by LD_LIBRARY_PATH (ms_cyrus_libpath).
ms_cyrus_extract() {
    [[ -s "$MS_CYRUS_ROOT/.extracted" && -x "$MS_CYRUS_BIN/master" ]] && return 0
    local debs="$MS_CYRUS_DIR/debs" log="$MS_CYRUS_DIR/apt-download.log"
    mkdir -p "$debs"
    chmod 755 "$MS_CYRUS_DIR"
    rm -f "$debs"/*.deb
    ms_log "downloading and unpacking cyrus-common and cyrus-imapd into $MS_CYRUS_ROOT"
    # apt-get download needs package lists, which a fresh machine may not have yet.
    if ! (cd "$debs" && apt-get download -q cyrus-common cyrus-imapd) >"$log" 2>&1; then
        [[ $(id -u) -eq 0 ]] || ms_die "apt-get download cyrus-common cyrus-imapd failed; see $log"
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                (cd "$debs" && apt-get download -q cyrus-common cyrus-imapd)
        } >>"$log" 2>&1 || ms_die "apt-get download cyrus-common cyrus-imapd failed; see $log"
    fi
    local tmp="$MS_CYRUS_ROOT.tmp" d
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # hecto-cyrus runs these binaries, whatever root's umask.
    chmod 755 "$tmp"
    for d in "$debs"/*.deb; do
        dpkg-deb -x "$d" "$tmp" || ms_die "dpkg-deb -x $d failed"
    done
    [[ -x "$tmp/usr/lib/cyrus/bin/master" && -x "$tmp/usr/lib/cyrus/bin/imapd" ]] ||
        ms_die "the cyrus packages in $debs hold no usr/lib/cyrus/bin/{master,imapd}"
    local unresolved
    # (ldd fails on the shell scripts among them: its status does not count, its output does.)
    unresolved="$( (LD_LIBRARY_PATH="$tmp/usr/lib/x86_64-linux-gnu" ldd "$tmp"/usr/lib/cyrus/bin/* 2>/dev/null || true) |
        awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
    [[ -z "$unresolved" ]] || ms_die "Cyrus needs libraries that are not installed: $unresolved(add their packages to MS_CYRUS_PACKAGES)"
    for d in "$debs"/*.deb; do
        dpkg-deb -f "$d" Package Version | tr '\n' ' '
        echo
    done >"$tmp/.extracted"
    rm -rf "$MS_CYRUS_ROOT"
    mv "$tmp" "$MS_CYRUS_ROOT"
}

# ---- TLS ------------------------------------------------------------------------------------

# A CA and a leaf for localhost/127.0.0.1 signed by it: rustls/webpki reject a self-signed leaf
# used as its own anchor (CaUsedAsEndEntity), so clients trust ca.pem and the server shows the leaf.
ms_tls() {
    local t="$MS_DIR/tls"
    [[ -s "$t/server-chain.pem" && -s "$t/ca.pem" ]] && return 0
    mkdir -p "$t"
    chmod 755 "$t"
    (
        cd "$t" || exit 1
        umask 022
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=hecto-watch mailstack CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" -out ca.pem
        openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        cat >server.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -sha256 -extfile server.ext -out server.pem 2>/dev/null
        cat server.pem ca.pem >server-chain.pem
        chmod 600 ca.key
        # Postfix's and Dovecot's masters read the key as root before dropping privileges.
        chmod 640 server.key
        rm -f server.csr server.ext ca.srl
    )
    openssl verify -CAfile "$t/ca.pem" "$t/server.pem" >/dev/null || ms_die "generated certificate does not verify"
}

# ---- configuration --------------------------------------------------------------------------

ms_render() { # template destination
    sed -e "s|@DIR@|$MS_DIR|g" \
        -e "s|@IMAP_PORT@|$MS_IMAP_PORT|g" -e "s|@IMAPS_PORT@|$MS_IMAPS_PORT|g" \
        -e "s|@SMTP_PORT@|$MS_SMTP_PORT|g" -e "s|@SUBMISSION_PORT@|$MS_SUBMISSION_PORT|g" \
        -e "s|@SUBMISSIONS_PORT@|$MS_SUBMISSIONS_PORT|g" \
        -e "s|@LMTP_PORT@|$MS_LMTP_PORT|g" -e "s|@VMAIL_UID@|${MS_VMAIL_UID:-}|g" \
        -e "s|@VMAIL_GID@|${MS_VMAIL_GID:-}|g" -e "s|@CYRUS_IMAP_PORT@|$MS_CYRUS_IMAP_PORT|g" \
        -e "s|@CYRUS_IMAPS_PORT@|$MS_CYRUS_IMAPS_PORT|g" -e "s|@CYRUS_BIN@|$MS_CYRUS_BIN|g" \
        -e "s|@CYRUS_USER@|$MS_CYRUS_USER|g" -e "s|@IDP_PORT@|$MS_IDP_PORT|g" "$MS_TEMPLATES/$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

# Userdb extra fields of the Korean layout: no \Junk and no \Sent anywhere; spam in 스팸메일함
# (on the wire in modified UTF-7: &wqTTOLpUx3zVaA-), sent mail in 보낸메일함.
# (An empty value cannot be given in passwd-file fields, so the \Junk/\Sent definitions stay; the
# mailboxes carrying them simply never exist for these users.)
MS_KOREAN_FIELDS='userdb_namespace/inbox/mailbox/Junk/auto=no userdb_namespace/inbox/mailbox/Sent/auto=no userdb_namespace/inbox/mailbox/스팸메일함/auto=subscribe userdb_namespace/inbox/mailbox/보낸메일함/auto=subscribe'

ms_user_line() { # email password korean(0|1)
    local fields=""
    if [[ "$3" == 1 ]]; then
        fields="$MS_KOREAN_FIELDS userdb_sieve_before=$MS_DIR/dovecot/sieve/spam-korean.sieve"
    fi
    printf '%s:{PLAIN}%s::::::%s\n' "$1" "$2" "$fields"
}

ms_add_user_locked() { # email password korean
    local email="$1" pw="$2" korean="$3"
    [[ "$email" =~ ^[A-Za-z0-9._+-]+@example\.test$ ]] || ms_die "user must be <name>@example.test, got '$email'"
    [[ "$pw" =~ ^[^:[:space:]]+$ ]] || ms_die "password must not contain ':' or spaces"
    touch "$MS_USERS"
    if grep -q "^$email:" "$MS_USERS"; then
        # Same user again: replace the line (password or layout may change).
        grep -v "^$email:" "$MS_USERS" >"$MS_USERS.tmp" || true
    else
        cp "$MS_USERS" "$MS_USERS.tmp"
    fi
    ms_user_line "$email" "$pw" "$korean" >>"$MS_USERS.tmp"
    chmod 640 "$MS_USERS.tmp"
    # Dovecot re-reads a passwd-file only when its mtime (seconds) or size changes: two users of
    # equal name length added within one second would leave the second unknown ("User doesn't
    # exist" at LMTP). Make the mtime strictly increase with every change (we hold the lock).
    local old_mtime new_mtime
    old_mtime="$(stat -c %Y "$MS_USERS" 2>/dev/null || echo 0)"
    new_mtime="$(date +%s)"
    ((new_mtime > old_mtime)) || new_mtime=$((old_mtime + 1))
    touch -d "@$new_mtime" "$MS_USERS.tmp"
    chgrp dovecot "$MS_USERS.tmp" 2>/dev/null || true
    mv "$MS_USERS.tmp" "$MS_USERS"
}

# The mail processes cannot run as root (Dovecot: "Mail access not allowed for root"), so the
# stack's mail belongs to a dedicated system user, created here when missing.
MS_VMAIL_USER=hecto-vmail

ms_vmail_user() {
    if ! id -u "$MS_VMAIL_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$MS_VMAIL_USER" || ms_die "cannot create user $MS_VMAIL_USER"
    fi
    MS_VMAIL_UID="$(id -u "$MS_VMAIL_USER")"
    MS_VMAIL_GID="$(id -g "$MS_VMAIL_USER")"
}

ms_configure() {
    ms_vmail_user
    mkdir -p "$MS_DIR/dovecot/run" "$MS_DIR/dovecot/state" "$MS_DIR/dovecot/sieve" \
        "$MS_DIR/postfix/etc" "$MS_DIR/postfix/spool" "$MS_DIR/postfix/data" "$MS_DIR/mail"
    chmod 755 "$MS_DIR/dovecot" "$MS_DIR/dovecot/run" "$MS_DIR/postfix" "$MS_DIR/postfix/etc"
    ms_render dovecot.conf.in "$MS_DOVECOT_CONF"
    ms_render dovecot-oauth2.conf.ext.in "$MS_DIR/dovecot/dovecot-oauth2.conf.ext"
    mkdir -p "$MS_DIR/idp"
    cp "$MS_TEMPLATES/idp.py" "$MS_DIR/idp/idp.py"
    cp "$MS_TEMPLATES/spam-junk.sieve" "$MS_TEMPLATES/spam-korean.sieve" "$MS_DIR/dovecot/sieve/"
    if [[ ! -s "$MS_USERS" ]]; then
        local u
        for u in ops merchant agency merchant2 hecto; do
            ms_add_user_locked "$u@example.test" "$MS_PASSWORD" 0
        done
        ms_add_user_locked "hanmail@example.test" "$MS_PASSWORD" 1
    fi
    ms_render postfix-main.cf.in "$MS_POSTFIX_CONF/main.cf"
    ms_render postfix-master.cf.in "$MS_POSTFIX_CONF/master.cf"
    # Postfix insists that the data directory belongs to mail_owner.
    chown postfix:postfix "$MS_DIR/postfix/data"
    chown "$MS_VMAIL_UID:$MS_VMAIL_GID" "$MS_DIR/mail"
    ms_write_ports
}

ms_write_ports() {
    {
        echo "MS_IMAP_PORT=$MS_IMAP_PORT"
        echo "MS_IMAPS_PORT=$MS_IMAPS_PORT"
        echo "MS_SMTP_PORT=$MS_SMTP_PORT"
        echo "MS_SUBMISSION_PORT=$MS_SUBMISSION_PORT"
        echo "MS_SUBMISSIONS_PORT=$MS_SUBMISSIONS_PORT"
        echo "MS_LMTP_PORT=$MS_LMTP_PORT"
        echo "MS_IDP_PORT=$MS_IDP_PORT"
        echo "MS_CYRUS_IMAP_PORT=$MS_CYRUS_IMAP_PORT"
        echo "MS_CYRUS_IMAPS_PORT=$MS_CYRUS_IMAPS_PORT"
    } >"$MS_DIR/ports.env.tmp"
    mv "$MS_DIR/ports.env.tmp" "$MS_DIR/ports.env"
}

# Cyrus's processes drop root for their own system user (cyrus_user in imapd.conf), which owns
# its databases, spool and sockets.
MS_CYRUS_USER=hecto-cyrus

ms_cyrus_user() {
    if ! id -u "$MS_CYRUS_USER" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$MS_CYRUS_USER" || ms_die "cannot create user $MS_CYRUS_USER"
    fi
}

ms_cyrus_configure() {
    ms_cyrus_user
    local c="$MS_CYRUS_DIR"
    # What Debian's cyrus-makedirs would create (Cyrus makes the rest on demand). master writes
    # its pid file (run/) as root; everything else is written as hecto-cyrus.
    local d
    mkdir -p "$c/run" "$c/spool" "$c/sieve" "$c/tmp" "$c/tls"
    for d in db proc socket log msg user quota lock; do
        mkdir -p "$c/config/$d"
    done
    chmod 755 "$c" "$c/run" "$c/tls"
    chmod 750 "$c/config" "$c/spool"
    chown -R "$MS_CYRUS_USER:$MS_CYRUS_USER" "$c/config" "$c/spool" "$c/sieve" "$c/tmp"
    ms_render cyrus-imapd.conf.in "$MS_CYRUS_CONF"
    ms_render cyrus.conf.in "$c/cyrus.conf"
    chmod 644 "$MS_CYRUS_CONF" "$c/cyrus.conf"
    # Cyrus ignores unknown options with only a syslog line: conf-lint lists them.
    local lint
    lint="$(LD_LIBRARY_PATH="$(ms_cyrus_libpath)" "$MS_CYRUS_BIN/cyr_info" -C "$MS_CYRUS_CONF" \
        -M "$c/cyrus.conf" conf-lint 2>&1)" || ms_die "cyr_info conf-lint failed: $lint"
    [[ -z "$lint" ]] || ms_die "$MS_CYRUS_CONF has options Cyrus does not know: $lint"
    # imapd reads the key itself, as hecto-cyrus, on every TLS handshake (Dovecot and Postfix read
    # theirs as root): it gets its own copy.
    install -m 644 "$MS_DIR/tls/server-chain.pem" "$c/tls/server-chain.pem"
    install -m 600 -o "$MS_CYRUS_USER" -g "$MS_CYRUS_USER" "$MS_DIR/tls/server.key" "$c/tls/server.key"
    ms_write_ports
}

# ---- processes ------------------------------------------------------------------------------

ms_pid_alive() { # pidfile name
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(head -n1 "$1" | tr -dc 0-9)"
    [[ -n "$pid" ]] || return 1
    [[ -r "/proc/$pid/comm" ]] || return 1
    # A stale pid file may name a reused pid: only our binary counts.
    [[ "$(cat "/proc/$pid/comm")" == "$2" ]] || return 1
    echo "$pid"
}

ms_port_open() { # port
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Readiness: poll the port (bounded), not sleep-and-hope.
ms_wait_port() { # port what
    local i
    for ((i = 0; i < 300; i++)); do
        ms_port_open "$1" && return 0
        sleep 0.1
    done
    return 1
}

ms_wait_gone() { # pid
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -d "/proc/$1" ]] || return 0
        sleep 0.05
    done
    return 1
}

ms_dovecot_running() { ms_pid_alive "$MS_DOVECOT_PID" dovecot >/dev/null; }
ms_postfix_running() { ms_pid_alive "$MS_POSTFIX_PID" master >/dev/null; }

ms_idp_running() { ms_pid_alive "$MS_IDP_PID" python3 >/dev/null; }

# The identity provider first: Dovecot asks it about every OAuth login.
ms_start_idp() {
    ms_idp_running && return 0
    ms_port_open "$MS_IDP_PORT" && ms_die "port $MS_IDP_PORT is taken by another process (set MAILSTACK_IDP_PORT, or stop it)"
    [[ -f "$MS_DIR/idp/idp.py" ]] || { mkdir -p "$MS_DIR/idp"; cp "$MS_TEMPLATES/idp.py" "$MS_DIR/idp/idp.py"; }
    setsid /usr/bin/python3 "$MS_DIR/idp/idp.py" --port "$MS_IDP_PORT" </dev/null >>"$MS_DIR/idp/idp.log" 2>&1 9>&- &
    echo $! >"$MS_IDP_PID"
    ms_wait_port "$MS_IDP_PORT" || ms_die "the test identity provider did not open port $MS_IDP_PORT; see $MS_DIR/idp/idp.log"
}

ms_stop_idp() {
    local pid
    pid="$(ms_pid_alive "$MS_IDP_PID" python3)" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    ms_wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

ms_start_dovecot() {
    if ms_dovecot_running; then
        return 0
    fi
    ms_start_idp
    local p
    for p in "$MS_IMAP_PORT" "$MS_IMAPS_PORT" "$MS_LMTP_PORT"; do
        ms_port_open "$p" && ms_die "port $p is taken by another process (set MAILSTACK_*_PORT, or stop it)"
    done
    sievec -c "$MS_DOVECOT_CONF" "$MS_DIR/dovecot/sieve/spam-junk.sieve" ||
        ms_die "sievec failed on spam-junk.sieve"
    sievec -c "$MS_DOVECOT_CONF" "$MS_DIR/dovecot/sieve/spam-korean.sieve" ||
        ms_die "sievec failed on spam-korean.sieve"
    # The daemon must not keep our stdout/stderr: a caller reading them to EOF (a test's
    # Command::output) would wait forever. Its early errors go to startup.log.
    dovecot -c "$MS_DOVECOT_CONF" </dev/null >>"$MS_DIR/dovecot/startup.log" 2>&1 9>&- ||
        ms_die "dovecot did not start: $(tail -n 5 "$MS_DIR/dovecot/startup.log")"

    ms_wait_port "$MS_IMAP_PORT" || ms_die "dovecot IMAP port $MS_IMAP_PORT did not open in 30 s; see $MS_DIR/dovecot/dovecot.log"
    ms_wait_port "$MS_IMAPS_PORT" || ms_die "dovecot IMAPS port $MS_IMAPS_PORT did not open"
    ms_wait_port "$MS_LMTP_PORT" || ms_die "dovecot LMTP port $MS_LMTP_PORT did not open"
}

# Stop a server's master (by its pid file) and what it started: its children are taken before it
# goes and killed after, so a stopped server drops its client connections, as in a real outage,
# even where the server's own shutdown does not reach a session process; then wait until the
# ports are closed, so a following start can bind them.
ms_stop_master() { # pidfile comm name port...
    local pidfile="$1" comm="$2" name="$3" pid
    shift 3
    pid="$(ms_pid_alive "$pidfile" "$comm")" || return 0
    local children
    children="$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! ms_wait_gone "$pid"; then
        ms_log "$name ($pid) did not exit in 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        ms_wait_gone "$pid" || ms_die "$name ($pid) survives SIGKILL"
    fi
    local c
    for c in $children; do
        kill -KILL "$c" 2>/dev/null || true
    done
    local i p open
    for ((i = 0; i < 100; i++)); do
        open=0
        for p in "$@"; do
            ms_port_open "$p" && open=1
        done
        ((open)) || break
        sleep 0.05
    done
}

ms_stop_dovecot() {
    # Its children: imap sessions, lmtp, auth.
    ms_stop_master "$MS_DOVECOT_PID" dovecot dovecot "$MS_IMAP_PORT"
}

ms_start_postfix() {
    if ms_postfix_running; then
        return 0
    fi
    local p
    for p in "$MS_SMTP_PORT" "$MS_SUBMISSION_PORT" "$MS_SUBMISSIONS_PORT"; do
        ms_port_open "$p" && ms_die "port $p is taken by another process (set MAILSTACK_*_PORT, or stop it)"
    done
    # set-permissions creates the queue's subdirectories with the owners postfix wants.
    postfix -c "$MS_POSTFIX_CONF" set-permissions >/dev/null 2>&1 || true
    postfix -c "$MS_POSTFIX_CONF" check || ms_die "postfix check failed for $MS_POSTFIX_CONF"
    postfix -c "$MS_POSTFIX_CONF" start </dev/null >/dev/null 2>&1 9>&- ||
        ms_die "postfix did not start; see $MS_DIR/postfix/postfix.log"
    ms_wait_port "$MS_SMTP_PORT" || ms_die "postfix SMTP port $MS_SMTP_PORT did not open in 30 s; see $MS_DIR/postfix/postfix.log"
    ms_wait_port "$MS_SUBMISSION_PORT" || ms_die "postfix submission port $MS_SUBMISSION_PORT did not open"
    ms_wait_port "$MS_SUBMISSIONS_PORT" || ms_die "postfix submissions port $MS_SUBMISSIONS_PORT did not open"
}

ms_stop_postfix() {
    local pid
    pid="$(ms_pid_alive "$MS_POSTFIX_PID" master)" || return 0
    postfix -c "$MS_POSTFIX_CONF" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    if ! ms_wait_gone "$pid"; then
        ms_log "postfix master ($pid) did not exit in 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        ms_wait_gone "$pid" || ms_die "postfix master ($pid) survives SIGKILL"
    fi
}

# Cyrus's master runs as .../usr/sbin/cyrmaster (Debian's symlink to master) so that its comm is
# not Postfix's "master".
ms_cyrus_running() { ms_pid_alive "$MS_CYRUS_PID" cyrmaster >/dev/null; }

# The unpacked binaries find their libcyrus*.so in the private root.
ms_cyrus_libpath() { echo "$MS_CYRUS_ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

ms_start_cyrus() {
    if ms_cyrus_running; then
        return 0
    fi
    [[ -s "$MS_CYRUS_CONF" && -x "$MS_CYRUS_BIN/master" ]] || ms_die "cyrus is not set up in $MS_CYRUS_DIR: run mailstack start"
    local p
    for p in "$MS_CYRUS_IMAP_PORT" "$MS_CYRUS_IMAPS_PORT"; do
        ms_port_open "$p" && ms_die "port $p is taken by another process (set MAILSTACK_CYRUS_*_PORT, or stop it)"
    done
    # -d: master detaches once its pid file is written, then runs START (ctl_cyrusdb -r) and
    # binds the ports. -L takes its stdout/stderr (and so the fd 9 lock must not reach it either);
    # Cyrus's own messages go to syslog (syslog_prefix hecto-cyrus), lost where none runs.
    LD_LIBRARY_PATH="$(ms_cyrus_libpath)" "$MS_CYRUS_ROOT/usr/sbin/cyrmaster" -d -C "$MS_CYRUS_CONF" \
        -M "$MS_CYRUS_DIR/cyrus.conf" -p "$MS_CYRUS_PID" -L "$MS_CYRUS_DIR/cyrus.log" \
        </dev/null >>"$MS_CYRUS_DIR/startup.log" 2>&1 9>&- ||
        ms_die "cyrus master did not start: $(tail -n 5 "$MS_CYRUS_DIR/startup.log" "$MS_CYRUS_DIR/cyrus.log" 2>/dev/null)"
    # Readiness: both ports, polled (bounded); a master that exits meanwhile fails at once.
    local i
    for ((i = 0; i < 300; i++)); do
        ms_port_open "$MS_CYRUS_IMAP_PORT" && ms_port_open "$MS_CYRUS_IMAPS_PORT" && return 0
        ms_cyrus_running || break
        sleep 0.1
    done
    ms_die "cyrus ports $MS_CYRUS_IMAP_PORT/$MS_CYRUS_IMAPS_PORT did not open ($(ms_cyrus_running && echo "master still starting after 30 s" || echo "master exited")); $(ms_cyrus_log_hint)"
}

# Where Cyrus's errors went: it logs only to syslog.
ms_cyrus_log_hint() {
    local out
    out="$(tail -n 5 "$MS_CYRUS_DIR/cyrus.log" 2>/dev/null || true)"
    [[ -n "$out" ]] && printf '%s: %s; ' "$MS_CYRUS_DIR/cyrus.log" "$out"
    if [[ -S /dev/log ]]; then
        echo "see syslog (tags hecto-cyrus/master, hecto-cyrus/imap, …)"
    else
        echo "Cyrus logs only to syslog and no syslog daemon runs here (no /dev/log), so its messages are lost"
    fi
}

ms_stop_cyrus() {
    # Its children: the sessions (imapd) and idled. master's SIGTERM handler also signals its
    # process group and waits for it.
    ms_stop_master "$MS_CYRUS_PID" cyrmaster "cyrus master" "$MS_CYRUS_IMAP_PORT" "$MS_CYRUS_IMAPS_PORT"
}

# ---- commands -------------------------------------------------------------------------------

ms_cmd_start() {
    ms_lock
    if ms_dovecot_running && ms_postfix_running && ms_cyrus_running; then
        return 0
    fi
    ms_install
    ms_cyrus_extract
    ms_tls
    # Configure only when nothing of ours runs: a half-running stack keeps its files.
    if ! ms_dovecot_running && ! ms_postfix_running; then
        ms_configure
    fi
    if ! ms_cyrus_running; then
        ms_cyrus_configure
    fi
    ms_start_dovecot
    ms_start_postfix
    ms_start_cyrus
    ms_log "running in $MS_DIR (IMAP $MS_IMAP_PORT, IMAPS $MS_IMAPS_PORT, SMTP $MS_SMTP_PORT, submission $MS_SUBMISSION_PORT, submissions $MS_SUBMISSIONS_PORT; Cyrus IMAP $MS_CYRUS_IMAP_PORT, IMAPS $MS_CYRUS_IMAPS_PORT)"
}

ms_cmd_stop() {
    ms_lock
    ms_stop_postfix
    ms_stop_dovecot
    ms_stop_cyrus
    ms_stop_idp
}

ms_cmd_clean() {
    ms_cmd_stop
    # The tests' private stacks (tests/notify_support: MAILSTACK_DIR-<name>) too.
    local d
    for d in "$MS_DIR"-*; do
        [ -d "$d" ] || continue
        MAILSTACK_DIR="$d" "${BASH_SOURCE[-1]}" stop >/dev/null 2>&1 || true
        rm -rf "$d"
    done
    rm -rf "$MS_DIR"
    ms_log "removed $MS_DIR"
}

ms_cmd_restart_dovecot() {
    ms_lock
    ms_stop_dovecot
    ms_start_dovecot
}

ms_cmd_stop_dovecot() {
    ms_lock
    ms_stop_dovecot
}

ms_cmd_start_dovecot() {
    ms_lock
    ms_start_dovecot
}

# Outage tests (SMTP down, IMAP up): stop/start Postfix only.
ms_cmd_stop_postfix() {
    ms_lock
    ms_stop_postfix
    # Wait for the listeners to close so clients see "connection refused", not a dying server.
    local i
    for ((i = 0; i < 100; i++)); do
        ms_port_open "$MS_SUBMISSION_PORT" || ms_port_open "$MS_SMTP_PORT" || break
        sleep 0.05
    done
}

ms_cmd_start_postfix() {
    ms_lock
    ms_start_postfix
}

ms_cmd_restart_cyrus() {
    ms_lock
    ms_stop_cyrus
    ms_start_cyrus
}

ms_cmd_stop_cyrus() {
    ms_lock
    ms_stop_cyrus
}

ms_cmd_start_cyrus() {
    ms_lock
    ms_start_cyrus
}

ms_cmd_status() {
    local rc=0 pid
    if pid="$(ms_pid_alive "$MS_DOVECOT_PID" dovecot)" && ms_port_open "$MS_IMAP_PORT"; then
        echo "dovecot: running (pid $pid; IMAP $MS_IMAP_PORT, IMAPS $MS_IMAPS_PORT, LMTP $MS_LMTP_PORT)"
    else
        echo "dovecot: stopped"
        rc=1
    fi
    if pid="$(ms_pid_alive "$MS_POSTFIX_PID" master)" && ms_port_open "$MS_SMTP_PORT"; then
        echo "postfix: running (pid $pid; SMTP $MS_SMTP_PORT, submission $MS_SUBMISSION_PORT)"
    else
        echo "postfix: stopped"
        rc=1
    fi
    if pid="$(ms_pid_alive "$MS_CYRUS_PID" cyrmaster)" && ms_port_open "$MS_CYRUS_IMAP_PORT"; then
        echo "cyrus: running (pid $pid; IMAP $MS_CYRUS_IMAP_PORT, IMAPS $MS_CYRUS_IMAPS_PORT)"
    else
        echo "cyrus: stopped"
        rc=1
    fi
    echo "dir: $MS_DIR"
    return $rc
}

ms_cmd_env() {
    cat <<EOF
export MAILSTACK_DIR='$MS_DIR'
export MAILSTACK_HOST='127.0.0.1'
export MAILSTACK_IMAP_PORT=$MS_IMAP_PORT
export MAILSTACK_IMAPS_PORT=$MS_IMAPS_PORT
export MAILSTACK_SMTP_PORT=$MS_SMTP_PORT
export MAILSTACK_SUBMISSION_PORT=$MS_SUBMISSION_PORT
export MAILSTACK_SUBMISSIONS_PORT=$MS_SUBMISSIONS_PORT
export MAILSTACK_LMTP_PORT=$MS_LMTP_PORT
export MAILSTACK_IDP_URL='http://127.0.0.1:$MS_IDP_PORT'
export MAILSTACK_CA_FILE='$MS_DIR/tls/ca.pem'
export MAILSTACK_DOMAIN='example.test'
export MAILSTACK_PASSWORD='$MS_PASSWORD'
export MAILSTACK_USERS='ops@example.test merchant@example.test agency@example.test merchant2@example.test hecto@example.test hanmail@example.test'
export MAILSTACK_KOREAN_USER='hanmail@example.test'
export MAILSTACK_MAIL_DIR='$MS_DIR/mail'
export MAILSTACK_CYRUS_IMAP_PORT=$MS_CYRUS_IMAP_PORT
export MAILSTACK_CYRUS_IMAPS_PORT=$MS_CYRUS_IMAPS_PORT
export MAILSTACK_CYRUS_DIR='$MS_CYRUS_DIR'
export MAILSTACK_CYRUS_SPOOL_DIR='$MS_CYRUS_DIR/spool'
EOF
}

ms_cmd_add_user() {
    local email="" pw="" korean=0 a
    for a in "$@"; do
        case "$a" in
        --korean) korean=1 ;;
        -*) ms_die "add-user: unknown option $a" ;;
        *) if [[ -z "$email" ]]; then email="$a"; elif [[ -z "$pw" ]]; then pw="$a"; else ms_die "add-user: too many arguments"; fi ;;
        esac
    done
    [[ -n "$email" ]] || ms_die "usage: mailstack add-user EMAIL [PASSWORD] [--korean]"
    [[ -n "$pw" ]] || pw="$MS_PASSWORD"
    ms_lock
    mkdir -p "$MS_DIR/dovecot"
    ms_add_user_locked "$email" "$pw" "$korean"
    # Dovecot re-reads a changed passwd-file at most once per second (passwd_file_sync compares
    # with ioloop_time), so a login right after this could still miss the user. Wait until the
    # running auth process answers for them — a readiness probe, bounded.
    if ms_dovecot_running; then
        local i
        for ((i = 0; i < 100; i++)); do
            # Both databases: the userdb (LMTP delivery) and the passdb (IMAP login).
            if doveadm -c "$MS_DOVECOT_CONF" user "$email" >/dev/null 2>&1 &&
                doveadm -c "$MS_DOVECOT_CONF" auth test "$email" "$pw" >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.05
        done
        ms_die "dovecot does not know $email 5 s after adding it; see $MS_DIR/dovecot/dovecot.log"
    fi
}

# One IMAP LOGIN on Cyrus's plain port (then LOGOUT): 0 when accepted. A subshell, so that the
# connection's fd and redirections stay in it.
ms_cyrus_login_ok() ( # user password
    exec 3<>"/dev/tcp/127.0.0.1/$MS_CYRUS_IMAP_PORT" || exit 1
    line="" rc=1
    IFS= read -r -t 5 line <&3 && [[ "$line" == "* OK"* ]] || exit 1
    printf 'a LOGIN "%s" "%s"\r\nb LOGOUT\r\n' "$1" "$2" >&3
    while IFS= read -r -t 5 line <&3; do
        case "$line" in
        "a OK"*) rc=0 ;;
        "b "*) break ;;
        esac
    done
    exit $rc
) 2>/dev/null

ms_cmd_add_cyrus_user() {
    [[ $# -ge 1 && $# -le 2 && "$1" != -* ]] || ms_die "usage: mailstack add-cyrus-user NAME [PASSWORD]"
    local name="${1%@example.test}" pw="${2:-$MS_PASSWORD}"
    # Cyrus lowercases login names (username_tolower) and "." is its hierarchy separator.
    [[ "$name" =~ ^[a-z0-9_+-]+$ ]] ||
        ms_die "cyrus user must be NAME or NAME@example.test, NAME of a-z 0-9 _ + -; got '$1'"
    [[ "$pw" =~ ^[^\"\\[:space:]]+$ ]] || ms_die "password must not contain '\"', '\\' or spaces"
    command -v saslpasswd2 >/dev/null 2>&1 || ms_die "saslpasswd2 (sasl2-bin) is missing: run mailstack start first"
    ms_lock
    ms_cyrus_user
    mkdir -p "$MS_CYRUS_DIR"
    # -c creates or replaces. The realm is the domain: Cyrus (virtdomains: userid) hands
    # name@example.test to SASL, whose sasldb splits it into user and realm.
    printf '%s' "$pw" | saslpasswd2 -f "$MS_CYRUS_SASLDB" -p -c -u example.test "$name" ||
        ms_die "saslpasswd2 failed for $name@example.test"
    chown "$MS_CYRUS_USER:$MS_CYRUS_USER" "$MS_CYRUS_SASLDB"
    chmod 600 "$MS_CYRUS_SASLDB"
    # Readiness: a real login, bounded. It also makes Cyrus create INBOX, INBOX.Sent and
    # INBOX.Junk (autocreate), so the user's folders exist when this returns.
    if ms_cyrus_running; then
        local i
        for ((i = 0; i < 100; i++)); do
            ms_cyrus_login_ok "$name@example.test" "$pw" && return 0
            sleep 0.05
        done
        ms_die "cyrus does not accept $name@example.test 5 s after adding it; $(ms_cyrus_log_hint)"
    fi
}

ms_usage() {
    sed -n '2,27p' "${BASH_SOURCE[-1]}" | sed 's/^# \{0,1\}//'
}

mailstack_main() {
    ms_init_vars
    case "${1:-}" in
    start) ms_cmd_start ;;
    stop) ms_cmd_stop ;;
    clean) ms_cmd_clean ;;
    restart-dovecot) ms_cmd_restart_dovecot ;;
    stop-dovecot) ms_cmd_stop_dovecot ;;
    start-dovecot) ms_cmd_start_dovecot ;;
    stop-postfix) ms_cmd_stop_postfix ;;
    start-postfix) ms_cmd_start_postfix ;;
    status) ms_cmd_status ;;
    env) ms_cmd_env ;;
    add-user)
        shift
        ms_cmd_add_user "$@"
        ;;
    restart-cyrus) ms_cmd_restart_cyrus ;;
    stop-cyrus) ms_cmd_stop_cyrus ;;
    start-cyrus) ms_cmd_start_cyrus ;;
    add-cyrus-user)
        shift
        ms_cmd_add_cyrus_user "$@"
        ;;
    -h | --help | help) ms_usage ;;
    *)
        ms_usage >&2
        exit 2
        ;;
    esac
}
