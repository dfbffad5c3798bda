"""A real S3-compatible store on loopback for tests: SeaweedFS (`weed server -s3`: a master, a volume server, a
filer and the S3 gateway in one process), built from its Go module by `make seaweedfs` and cached by version. The
store production lakes run on, speaking the S3 API that boto3, pyarrow's S3 filesystem and our scorer use.

Started ready to write: SeaweedFS defers its first volume allocation for a few seconds after start (a safety
delay of its master), so `start` makes one write to a scratch bucket and returns once it is stored; a test's own
first write then takes milliseconds, not seconds. That start costs ~10 s, so tests share one server per module and
`reset` it between them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import botocore.exceptions

from testkit.ports import free_port
from testkit.processes import ManagedProcess

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"  # hack/versions.env
CACHE = Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache" / "modelrollout"))
WEED = CACHE / "bin" / f"seaweedfs-{SEAWEEDFS_VERSION}" / "weed"
_WARM_UP_BUCKET = "warm-up"


class S3Server(ManagedProcess):
    def __init__(self, work_dir: Path, *, port: int | None = None, ready_within: float = 60) -> None:
        if not WEED.exists():
            raise RuntimeError(f"SeaweedFS is not built ({WEED} is missing): run `make seaweedfs`")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready_within = ready_within
        data = work_dir / "seaweedfs"
        data.mkdir(parents=True, exist_ok=True)
        ports = {name: str(free_port()) for name in ("master", "volume", "filer")}
        super().__init__(
            [
                str(WEED), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
                f"-filer.port={ports['filer']}", "-s3", f"-s3.port={self.port}",
                "-master.volumeSizeLimitMB=64", "-volume.max=50", "-volume.preStopSeconds=0",
            ],
            name=f"SeaweedFS S3 :{self.port}",
            log_path=work_dir / "seaweedfs.log",
        )  # fmt: skip

    def start(self, *, wait: bool = True) -> None:
        super().start(wait=False)
        if wait:
            self._warm_up()

    def stop(self, *, graceful: bool = True, timeout: float = 5) -> int | None:
        # Its volume server lingers after SIGTERM by design (preStopSeconds, then flushes); test data is scratch.
        return super().stop(graceful=graceful, timeout=timeout)

    def _warm_up(self) -> None:
        """Wait until the gateway answers and a first object is stored (the volumes exist)."""
        deadline = time.monotonic() + self._ready_within
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            try:
                client = self.client()
                client.create_bucket(Bucket=_WARM_UP_BUCKET)
                client.put_object(Bucket=_WARM_UP_BUCKET, Key="ready", Body=b"1")
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                last = exc
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{self.name} could not store an object within {self._ready_within:.0f}s ({last}):\n"
                             f"{self.log()}")  # fmt: skip

    def reset(self) -> None:
        """Every bucket emptied and deleted (what a test made), so a server shared by several tests starts each
        one empty without paying its start again."""
        client = self.client()
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            if name == _WARM_UP_BUCKET:
                continue
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=name, Key=item["Key"])
            client.delete_bucket(Bucket=name)

    def client(self):  # type: ignore[no-untyped-def] - boto3 clients are typed by stubs only when asked for
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))
