#!/bin/bash
# build-kernel.sh OUTDIR — build smolvm's default guest kernel.
#
# Debian's linux-source-6.1 + patches/*.patch + `make tinyconfig` + the
# fragment kernel.config + `make olddefconfig`, everything built in.
# Outputs: OUTDIR/vmlinux (ELF, what the VMM loads; also bootable by QEMU via
# its PVH note), OUTDIR/bzImage, OUTDIR/System.map, OUTDIR/kernel.config.full
# (the resulting .config); full log in OUTDIR/kernel-build.log.
# The tree lives in OUTDIR/linux-src and is reused: a changed fragment or
# patch set rebuilds incrementally.
#
# Environment: LINUX_SOURCE_TARBALL (default /usr/src/linux-source-6.1.tar.xz),
#              JOBS (default: nproc).
set -euo pipefail

die() { echo "build-kernel: error: $*" >&2; exit 1; }
step() { echo "==> [kernel] $*"; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=$HERE/kernel.config
OUT=$(realpath -m "$1")
TARBALL=${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
JOBS=${JOBS:-$(nproc)}
SRC=$OUT/linux-src
LOG=$OUT/kernel-build.log
STAMP=$OUT/kernel.stamp

[ -f "$FRAGMENT" ] || die "missing $FRAGMENT"
shopt -s nullglob
PATCHES=("$HERE"/patches/*.patch)
shopt -u nullglob

# ---- cache check -----------------------------------------------------------
inputs_hash() {
    {
        echo "fragment"; sha256sum < "$FRAGMENT"
        for p in "${PATCHES[@]}"; do echo "patch $(basename "$p")"; sha256sum < "$p"; done
        echo "script"; sha256sum < "${BASH_SOURCE[0]}"
        # a new linux-source-6.1 package (new tarball) rebuilds too
        [ -f "$TARBALL" ] && echo "tarball $(basename "$TARBALL") $(stat -c %s "$TARBALL")"
    } | sha256sum | cut -d' ' -f1
}
mkdir -p "$OUT"
HASH=$(inputs_hash)
if [ -f "$OUT/vmlinux" ] && [ -f "$OUT/bzImage" ] && [ -f "$STAMP" ] &&
   [ "$(cat "$STAMP")" = "$HASH" ]; then
    echo "kernel up to date ($OUT/vmlinux)"
    exit 0
fi

# one build at a time per OUTDIR
exec 9>"$OUT/.kernel.lock"
if command -v flock >/dev/null; then
    flock -n 9 || { echo "build-kernel: waiting for another build in $OUT ..."; flock 9; }
fi

# ---- tools -----------------------------------------------------------------
missing=()
for t in make gcc ld flex bison bc patch tar xz lz4 sha256sum objcopy; do
    command -v "$t" >/dev/null || missing+=("$t")
done
[ -f /usr/include/libelf.h ] || missing+=("libelf.h(libelf-dev)")
[ -f /usr/include/openssl/opensslv.h ] || missing+=("openssl headers(libssl-dev)")
[ ${#missing[@]} -eq 0 ] || die "missing build tools: ${missing[*]}
  try: apt-get install build-essential bc flex bison libelf-dev libssl-dev lz4 xz-utils patch"

START=$(date +%s)
: > "$LOG"
echo "build-kernel: full log in $LOG"

# ---- 1. source tree --------------------------------------------------------
[ -f "$TARBALL" ] || die "kernel source $TARBALL not found; install it with: apt-get install linux-source-6.1"
SRC_ID="$(basename "$TARBALL") $(stat -c '%s %Y' "$TARBALL")"
if [ ! -f "$SRC/.smolvm-source" ] || [ "$(cat "$SRC/.smolvm-source")" != "$SRC_ID" ]; then
    step "extracting $(basename "$TARBALL") into $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    tar -xf "$TARBALL" -C "$SRC" --strip-components=1
    mkdir -p "$SRC/.smolvm-patches"
    echo "$SRC_ID" > "$SRC/.smolvm-source"
else
    step "reusing source tree $SRC"
fi

# ---- 2. patches ------------------------------------------------------------
# The applied set is recorded in linux-src/.smolvm-patches/; when it differs
# from patches/, revert the old set and apply the new one (the tree stays and
# the rebuild is incremental).
applied_sig() { (cd "$SRC/.smolvm-patches" && for f in *.patch; do [ -f "$f" ] && echo "$f $(sha256sum < "$f")"; done) || true; }
wanted_sig()  { for p in "${PATCHES[@]}"; do echo "$(basename "$p") $(sha256sum < "$p")"; done; }
if [ "$(applied_sig)" != "$(wanted_sig)" ]; then
    old=("$SRC"/.smolvm-patches/*.patch)
    for ((i=${#old[@]}-1; i>=0; i--)); do
        [ -f "${old[i]}" ] || continue
        step "reverting old $(basename "${old[i]}")"
        patch -d "$SRC" -p1 -R -s --no-backup-if-mismatch < "${old[i]}" >> "$LOG" 2>&1 ||
            die "cannot revert $(basename "${old[i]}"); delete $SRC and re-run"
        rm -f "${old[i]}"
    done
    for p in "${PATCHES[@]}"; do
        step "applying $(basename "$p")"
        patch -d "$SRC" -p1 -s --forward --no-backup-if-mismatch < "$p" >> "$LOG" 2>&1 ||
            die "patch $(basename "$p") does not apply (see $LOG)"
        cp "$p" "$SRC/.smolvm-patches/"
    done
else
    step "patches already applied (${#PATCHES[@]})"
fi

# ---- 3. configuration ------------------------------------------------------
MAKE=(make -C "$SRC" ARCH=x86_64 KBUILD_BUILD_USER=smolvm KBUILD_BUILD_HOST=smolvm)
step "configuring: tinyconfig + kernel.config + olddefconfig"
{
    "${MAKE[@]}" tinyconfig
    # later assignments win in kconfig: append the fragment
    cat "$FRAGMENT" >> "$SRC/.config"
    "${MAKE[@]}" olddefconfig
} >> "$LOG" 2>&1 || die "configuration failed (see $LOG)"

# ---- 4. verify every line of the fragment took --------------------------------
step "verifying the fragment against .config"
bad=()
while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%$'\r'}
    case "$line" in
        CONFIG_*=*)
            grep -qxF -- "$line" "$SRC/.config" || {
                sym=${line%%=*}
                have=$(grep -E "^$sym=|^# $sym is not set" "$SRC/.config" || echo "absent (dependency missing?)")
                bad+=("$line  -> got: $have")
            } ;;
        "# CONFIG_"*" is not set")
            sym=${line#\# }; sym=${sym%% *}
            if grep -qE "^$sym=[ym]" "$SRC/.config"; then
                bad+=("$line  -> got: $(grep -E "^$sym=" "$SRC/.config")")
            fi ;;
    esac
done < "$FRAGMENT"
if [ ${#bad[@]} -gt 0 ]; then
    echo "build-kernel: these kernel.config options did not take:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
fi
echo "    all $(grep -cE '^CONFIG_|^# CONFIG_.* is not set' "$FRAGMENT") options OK"

# ---- 5. build --------------------------------------------------------------
# condensed make output: a counter every 50 build steps, link steps and
# errors/warnings verbatim (the whole output is in the log)
progress() {
    local n=0 line kw
    while IFS= read -r line; do
        kw=${line#  }; kw=${kw%% *}
        case "$line" in
            "  LD "*|"  KSYMS "*|"  SORTTAB "*|"  SYSMAP "*|"  BUILD "*|"  NM "*)
                printf '    %4ds %s %s\n' $((SECONDS)) "$kw" "${line##* }" ;;
            "  "[A-Z]*" "*)
                n=$((n + 1))
                if ((n % 50 == 0)); then
                    printf '    %4ds compiling... %d files (%s)\n' $((SECONDS)) $n "${line##* }"
                fi ;;
            *[Ee]rror*|*warning:*|*"is ready"*)
                printf '    %s\n' "$line" ;;
        esac
    done
    printf '    %4ds make finished, %d build steps\n' $((SECONDS)) $n
}
SECONDS=0
step "compiling with -j$JOBS (takes minutes; condensed progress below)"
set +e
"${MAKE[@]}" -j"$JOBS" vmlinux bzImage 2>&1 | tee -a "$LOG" | progress
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    echo "build-kernel: make failed (exit $rc); last lines of $LOG:" >&2
    grep -E "error|Error" "$LOG" | tail -20 >&2 || true
    tail -15 "$LOG" >&2
    exit 1
fi

# ---- 6. outputs ------------------------------------------------------------
step "installing outputs into $OUT"
objcopy --strip-debug "$SRC/vmlinux" "$OUT/vmlinux.tmp" && mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
cp "$SRC/arch/x86/boot/bzImage" "$OUT/bzImage.tmp" && mv "$OUT/bzImage.tmp" "$OUT/bzImage"
cp "$SRC/System.map" "$OUT/System.map"
cp "$SRC/.config" "$OUT/kernel.config.full"
grep -q " exc_page_fault$" "$OUT/System.map" || die "exc_page_fault missing from System.map"
echo "$HASH" > "$STAMP"
END=$(date +%s)
printf '    vmlinux %s bytes, bzImage %s bytes, %d s\n' \
    "$(stat -c %s "$OUT/vmlinux")" "$(stat -c %s "$OUT/bzImage")" $((END - START))
echo "kernel built: $OUT/vmlinux $OUT/bzImage"
