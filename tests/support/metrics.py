"""Reading ``/metrics`` in tests: a scrape parsed into samples, and the difference between two scrapes."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-token-for-tests-0123456789"
Sample = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Sample, float]:
    """Every sample of a scrape: (name, its labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: httpx.Client, path: str = "/metrics", token: str = TOKEN) -> dict[Sample, float]:
    answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    return parse(answer.text)


def value(samples: Mapping[Sample, float], name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when the scrape has none (a series not yet created)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Mapping[Sample, float], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (others summed over)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def names(samples: Mapping[Sample, float]) -> set[str]:
    return {name for name, _labels in samples}
