#!/usr/bin/env python3
"""bench/registry.py [--runs N] [--mib M] [--json]

smolvm push/pull through an OCI registry, chunked (docs/registry.md) vs the
same bundle pushed as one blob.

Bundles: the virtio test guest (64 MiB) with a 64 MiB disk holding M MiB of
random data (default 24): v1, and v2 = the same with 1 MiB of the data
changed, both packed by smolvm. Per run (default 3; medians [min..max]), a
fresh docker-registry on 127.0.0.1 (storage in a temporary directory):

  chunked   smolvm push v1, push v2; on a fresh host (empty blob store) pull
            v1, then pull v2 (its blob store warm with v1's chunks):
            wall time, the bytes smolvm reports it moved, and the growth of
            the registry's storage on push
  one blob  the same bundles uploaded as one blob each (monolithic POST +
            PUT, as a naive push would) and fetched back with one GET

Needs: build/smolvm + plugins (`make all`), build/guest/virtio.elf (`make
test-guests`), /dev/kvm, docker-registry, python3. Output: the table on
stdout, bench/results/registry-latest.json (all values); --json prints that
instead.
"""
import argparse, hashlib, http.client, json, os, re, shutil, socket, statistics
import subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLVM = os.path.join(ROOT, "build", "smolvm")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def du(path):
    n = 0
    for d, _, fs in os.walk(path):
        for f in fs:
            n += os.path.getsize(os.path.join(d, f))
    return n


class Registry:
    def __init__(self, work):
        self.dir = tempfile.mkdtemp(dir=work, prefix="reg-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.dir}/store\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.host = f"127.0.0.1:{self.port}"

    def store(self):
        return du(os.path.join(self.dir, "store"))

    def stop(self):
        self.p.kill()
        self.p.wait()


def sm(host_dir, *args):
    env = dict(os.environ, SMOLVM_CACHE_DIR=os.path.join(host_dir, "cache"),
               SMOLVM_DATA_DIR=os.path.join(host_dir, "data"), DOCKER_CONFIG=host_dir)
    env.pop("SMOLVM_REGISTRY_AUTH", None)
    t = time.monotonic()
    r = subprocess.run([SMOLVM, *args], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=600)
    dt = time.monotonic() - t
    if r.returncode:
        sys.exit(f"smolvm {' '.join(args)}: {r.stderr}")
    m = re.search(r"(uploaded|fetched) (\d+) blobs, (\d+) bytes; (\d+)", r.stdout)
    return dt, int(m.group(3)), int(m.group(2)), int(m.group(4))


def one_blob_push(reg, repo, path):
    data = open(path, "rb").read()
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    t = time.monotonic()
    c = http.client.HTTPConnection(reg.host)
    c.request("HEAD", f"/v2/{repo}/blobs/{dg}")
    r = c.getresponse(); r.read()
    sent = 0
    if r.status != 200:
        c.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
        r = c.getresponse(); r.read()
        loc = r.getheader("Location")
        loc = loc[loc.index("/v2/"):] if "://" in loc else loc
        c.request("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + dg, body=data,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse(); r.read()
        assert r.status == 201, r.status
        sent = len(data)
    c.close()
    return time.monotonic() - t, sent, dg


def one_blob_pull(reg, repo, dg, out):
    t = time.monotonic()
    c = http.client.HTTPConnection(reg.host)
    c.request("GET", f"/v2/{repo}/blobs/{dg}")
    r = c.getresponse()
    data = r.read()
    assert r.status == 200 and hashlib.sha256(data).hexdigest() == dg[7:]
    with open(out, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    c.close()
    return time.monotonic() - t, len(data)


def pack(work, name, data, k):
    d = os.path.join(work, name)
    os.makedirs(d)
    with open(os.path.join(d, "base.img"), "wb") as f:
        f.truncate(64 << 20)
        f.seek(4 << 20)
        f.write(data)
    with open(os.path.join(d, "m.lua"), "w") as f:
        f.write('machine { memory = "64M", kernel = "%s", cmdline = "blkseed=3",\n'
                '  devices = { { type = "uart" }, { type = "virtio-blk", path = "base.img", '
                'overlay = "base.cow" } } }\n' % k)
    env = dict(os.environ, SMOLVM_CACHE_DIR=os.path.join(d, "cache"),
               SMOLVM_DATA_DIR=os.path.join(d, "data"))
    out = os.path.join(work, name + ".smolmachine")
    r = subprocess.run([SMOLVM, "pack", "m.lua", "-o", out, "--ready",
                        "PASS: blk write/read/flush"], cwd=d, env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=120)
    if r.returncode:
        sys.exit(f"pack {name}: {r.stderr}{r.stdout[-2000:]}")
    return out


def med(v):
    return f"{statistics.median(v):.3f} [{min(v):.3f}..{max(v):.3f}]"


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=24)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    k = os.path.join(ROOT, "build", "guest", "virtio.elf")
    for need in (SMOLVM, k):
        if not os.path.exists(need):
            sys.exit(f"missing {need}")
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed")
    work = tempfile.mkdtemp(prefix="smolvm-bench-reg.")
    try:
        data = os.urandom(a.mib << 20)
        v1 = pack(work, "v1", data, k)
        changed = bytearray(data)
        changed[3 << 20:4 << 20] = os.urandom(1 << 20)
        v2 = pack(work, "v2", bytes(changed), k)
        res = {}

        def add(key, val):
            res.setdefault(key, []).append(val)

        for run in range(a.runs):
            reg = Registry(work)
            try:
                h = tempfile.mkdtemp(dir=work)
                base = reg.store()
                for v, path in (("v1", v1), ("v2", v2)):
                    dt, b, n, had = sm(h, "push", path, f"{reg.host}/bench/m:{v}", "--insecure")
                    s = reg.store()
                    add(f"chunked push {v} s", dt); add(f"chunked push {v} bytes", b)
                    add(f"chunked push {v} storage growth", s - base); base = s
                h2 = tempfile.mkdtemp(dir=work)
                for v, path in (("v1", v1), ("v2", v2)):
                    out = os.path.join(h2, v + ".smolmachine")
                    dt, b, n, had = sm(h2, "pull", f"{reg.host}/bench/m:{v}", "--insecure", "-o", out)
                    assert open(out, "rb").read() == open(path, "rb").read()
                    add(f"chunked pull {v} s", dt); add(f"chunked pull {v} bytes", b)
                base = reg.store()
                dgs = {}
                for v, path in (("v1", v1), ("v2", v2)):
                    dt, b, dgs[v] = one_blob_push(reg, "bench/one", path)
                    s = reg.store()
                    add(f"one blob push {v} s", dt); add(f"one blob push {v} bytes", b)
                    add(f"one blob push {v} storage growth", s - base); base = s
                for v in ("v1", "v2"):
                    dt, b = one_blob_pull(reg, "bench/one", dgs[v], os.path.join(h2, v + ".one"))
                    add(f"one blob pull {v} s", dt); add(f"one blob pull {v} bytes", b)
            finally:
                reg.stop()
        summary = {"bundle_bytes": {"v1": os.path.getsize(v1), "v2": os.path.getsize(v2)},
                   "random_mib": a.mib, "runs": a.runs, "values": res}
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench", "results", "registry-latest.json"), "w") as f:
            json.dump(summary, f, indent=1)
        if a.json:
            print(json.dumps(summary, indent=1))
            return
        print(f"bundles: v1 {os.path.getsize(v1)} bytes, v2 {os.path.getsize(v2)} bytes "
              f"({a.mib} MiB of random disk data, 1 MiB changed in v2); {a.runs} runs, "
              "median [min..max]")
        for key, v in res.items():
            if key.endswith(" s"):
                print(f"  {key:34} {med(v)}")
            else:
                print(f"  {key:34} {int(statistics.median(v))}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
