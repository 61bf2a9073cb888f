"""Fixtures shared by the test modules."""
import struct
import zlib
from pathlib import Path

import pytest


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))


@pytest.fixture(scope='session')
def png_bomb():
    """A writer of complete, valid 1-bit grey PNGs of any declared size:
    black pixels compress about 1000:1, so 40000x40000 is ~200 KB on disk
    and 1.6 G pixels (4.8 GB as BGR) decoded."""

    def write(path: Path, width: int = 40000, height: int = 40000) -> Path:
        row = b'\0' * (1 + (width + 7) // 8)  # filter byte + packed bits
        # a raw deflate block of 1000 rows, full-flushed so that its bytes
        # repeated decode to the rows repeated; the zlib header and checksum
        # around them
        pack = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = pack.compress(row * 1000) + pack.flush(zlib.Z_FULL_FLUSH)
        rest = pack.compress(row * (height % 1000)) + pack.flush()
        checksum = 1
        for _ in range(height // 1000):
            checksum = zlib.adler32(row * 1000, checksum)
        checksum = zlib.adler32(row * (height % 1000), checksum)
        body = (b'\x78\xda' + block * (height // 1000) + rest +
                struct.pack('>I', checksum))
        header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
        path.write_bytes(b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) +
                         _chunk(b'IDAT', body) + _chunk(b'IEND', b''))
        return path

    return write
