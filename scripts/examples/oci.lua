-- A machine from an OCI image: the official Python image, serving a
-- directory. Get the image first (registries are reached by skopeo, not by
-- smolvm; this writes an OCI image layout next to this script):
--
--   skopeo copy docker://python:3.12-slim oci:scripts/examples/python-oci:3.12
--   smolvm pack scripts/examples/oci.lua -o py312.smolmachine
--   smolvm exec py312.smolmachine -- python3 --version
--
-- (A `docker save` archive works the same way: docker_archive = "app.tar".)
machine {
  name = "py312",
  memory = "512M",
  rootfs = {
    oci = "python-oci:3.12",
    run = { "mkdir -p /srv && echo 'hello from an OCI image' > /srv/index.html" },
  },
  start = { "cd /srv && python3 -m http.server 8000 &" },
  ready = { port = 8000 },
  devices = {
    { type = "uart" },
    { type = "virtio-vsock" },
  },
}
