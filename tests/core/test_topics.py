import pytest

from xbus.core.errors import ConfigurationError
from xbus.core.topics import (
    CDC_PREFIX,
    cdc_dead_letter_topic,
    cdc_topic,
    delivery_topic,
    parse_delivery_topic,
    source_topic,
)


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


def test_change_data_capture_topics_are_under_cdc() -> None:
    assert cdc_topic("market_regulation", "business_licence") == (
        "cdc.market_regulation.business_licence"
    )
    assert cdc_dead_letter_topic("health") == "cdc.health._dead_letters"
    assert cdc_topic("health", "clinic").startswith(CDC_PREFIX)
    with pytest.raises(ConfigurationError, match="not valid"):
        cdc_topic("health", "clinic.x")
