# Snapshots of a guest in the middle of a computation (compute.elf): a run
# restored from a bundle packed at "step 3" must continue with step 4 and end
# with the same result as an uninterrupted run, in user and kernel mode, on
# one and two CPUs. Sourced by run.sh.

# compute_check MODE CPUS
compute_check() {
	local mode=$1 cpus=$2 tag=compute-$1-$2 s rc want got steps first
	local log=$WORK/$tag.log b=$WORK/$tag.smolmachine
	local args=(--append "mode=$mode cpus=$cpus" --cpus "$cpus")
	s=$(guest_script "$tag" "$GUEST/compute.elf")

	# Uninterrupted: 10 steps, then the result.
	run "$log" 30 boot "$s" "${args[@]}"
	rc=$?
	want=$(grep -m1 -o '^result 0x[0-9a-f]\{16\}' "$log")
	steps=$(grep -o '^step [0-9]*' "$log" | tr '\n' ' ')
	if [ $rc -ne 0 ] || [ -z "$want" ] ||
	   [ "$steps" != "step 0 step 1 step 2 step 3 step 4 step 5 step 6 step 7 step 8 step 9 " ]; then
		echo "boot: exit $rc"; show "$log"; return 1
	fi

	# Packed half-way, restored: resumes after step 3, same result.
	SMOLVM_CACHE_DIR=$WORK/cache run "$WORK/$tag-pack.log" 30 pack "$s" "${args[@]}" \
		--ready "step 3" -o "$b" || { echo "pack failed"; show "$WORK/$tag-pack.log"; return 1; }
	grep -q '^step 3' "$WORK/$tag-pack.log" || { show "$WORK/$tag-pack.log"; return 1; }
	run_bundle "$log" 30 "$b" --pristine
	rc=$?
	got=$(grep -m1 -o '^result 0x[0-9a-f]\{16\}' "$log")
	first=$(grep -m1 -o '^step [0-9]*' "$log")
	if [ $rc -ne 0 ] || [ -z "$first" ] || [ "${first#step }" -lt 4 ] ||
	   grep -Eq '^step [0-3]([^0-9]|$)' "$log" || grep -q '^compute:' "$log" || [ "$got" != "$want" ]; then
		echo "restored: exit $rc, first '$first', $got (uninterrupted: $want)"
		show "$log"; return 1
	fi
	echo "$mode, $cpus cpu(s): $want; restored from step 3: $first .. $got"
}

t_compute_user_1cpu() { need_kvm || return; compute_check user 1; }
t_compute_kernel_1cpu() { need_kvm || return; compute_check kernel 1; }
t_compute_user_2cpus() { need_kvm || return; compute_check user 2; }
t_compute_kernel_2cpus() { need_kvm || return; compute_check kernel 2; }
