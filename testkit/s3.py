"""A real S3-compatible server on loopback for tests: moto's standalone server (`moto_server`, a test dependency
in the lock). SeaweedFS would be a store closer to production, but its Go build (a wrapper module around its
`replace` directives) is not in this project's tool chain yet; moto speaks the same S3 API that boto3, pyarrow's
S3 filesystem and our scorer use."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import boto3

from testkit.ports import free_port
from testkit.processes import ManagedProcess

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server(ManagedProcess):
    def __init__(self, work_dir: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if moto is None:
            raise RuntimeError("moto_server is missing: it comes with moto[server] from requirements.lock (make venv)")
        super().__init__(
            [moto, "-H", "127.0.0.1", "-p", str(self.port)],
            name=f"moto S3 :{self.port}",
            log_path=work_dir / "moto.log",
            ready_url=f"{self.url}/moto-api/",
        )

    def client(self):  # type: ignore[no-untyped-def] - boto3 clients are typed by stubs only when asked for
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))
