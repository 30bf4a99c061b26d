import pytest

from xbus.core.errors import ConfigurationError
from xbus.core.topics import delivery_topic, parse_delivery_topic, source_topic


def test_topic_names_follow_the_contract() -> None:
    assert source_topic("market_regulation", "business_licence") == (
        "gov.market_regulation.business_licence"
    )
    assert parse_delivery_topic(delivery_topic("tax_bureau", "business_licence")) == (
        "tax_bureau",
        "business_licence",
    )


@pytest.mark.parametrize("bad", ["Tax", "tax.bureau", "", "1tax", "tax-bureau"])
def test_names_that_would_break_topic_parsing_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="not valid"):
        delivery_topic(bad, "business_licence")
