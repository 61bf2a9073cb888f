"""Reading checkpoints: a URL is downloaded into the hub cache and read."""
from __future__ import annotations

import functools
import http.server
import os
import threading

import pytest
import torch

import convseg  # noqa: F401

from .models.published_layouts import (CLASSIFIER_KEYS, assert_landed,
                                      facebook_pairs, published_state_dict,
                                      small_backbone)


@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www over HTTP on localhost; yield (dir, base URL)."""
    root = tmp_path / 'www'
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


def test_url_is_downloaded_into_the_hub_cache(tmp_path, http_dir):
    root, base = http_dir
    bb = small_backbone()
    pairs = facebook_pairs(bb, False)
    state = published_state_dict(pairs, CLASSIFIER_KEYS['facebook'](64, False))
    torch.save({'model': state}, root / 'convnext_small_test.pth')

    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        bb = small_backbone(init_cfg=dict(
            type='Pretrained', checkpoint=f'{base}/convnext_small_test.pth'))
        bb.init_weights()
    finally:
        torch.hub.set_dir(old_hub)
    assert_landed(facebook_pairs(bb, False), state, bb)
    assert os.path.isfile(tmp_path / 'hub' / 'checkpoints' /
                          'convnext_small_test.pth')
