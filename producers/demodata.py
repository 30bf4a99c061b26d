"""Realistic, generated records for the demo departments; nothing real.

Seedable: the same seed gives the same records, so tests and demos can be repeated.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from typing import Any

from faker import Faker

from producers.identifiers import credit_code, resident_id

CITY = "杭州市"
PROVINCE = "浙江省"
DISTRICTS: dict[str, str] = {
    "330102": "上城区",
    "330105": "拱墅区",
    "330106": "西湖区",
    "330108": "滨江区",
    "330109": "萧山区",
    "330110": "余杭区",
    "330111": "富阳区",
    "330112": "临安区",
    "330113": "临平区",
    "330114": "钱塘区",
}
ENTERPRISE_TYPES = (
    "有限责任公司(自然人投资或控股)",
    "有限责任公司(自然人独资)",
    "股份有限公司(非上市)",
    "个人独资企业",
    "合伙企业",
)
SCOPES = (
    "软件开发;信息技术咨询服务;数据处理服务",
    "餐饮服务;食品销售",
    "货物进出口;技术进出口",
    "建设工程施工;建筑材料销售",
    "医疗器械经营;健康咨询服务",
    "日用百货销售;服装服饰零售",
)


class DemoData:
    """A seedable source of generated department records."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._faker = Faker("zh_CN")
        self._faker.seed_instance(seed)
        self._serial = self._random.randrange(10**7, 10**8)

    def district(self) -> tuple[str, str]:
        """A district of the city: ``(code, name)``."""
        code = self._random.choice(sorted(DISTRICTS))
        return code, DISTRICTS[code]

    def address(self, district_name: str) -> str:
        """A street address in ``district_name``."""
        street = self._faker.street_name()
        return f"{PROVINCE}{CITY}{district_name}{street}{self._random.randint(1, 999)}号"

    def person_id(self, region: str, *, min_age: int = 18, max_age: int = 75) -> str:
        """A resident identity number of an adult registered in ``region``."""
        today = dt.date.today()
        birth = today - dt.timedelta(days=self._random.randint(min_age * 365, max_age * 365))
        return resident_id(region, birth, self._random.randrange(1000))

    def mobile(self) -> str:
        """A mainland mobile number."""
        return str(self._faker.phone_number())

    def business_licence(self) -> dict[str, Any]:
        """A newly issued business licence of the market regulation bureau."""
        code, name = self.district()
        self._serial += 1
        established = dt.date.today() - dt.timedelta(days=self._random.randint(0, 30))
        capital = decimal.Decimal(self._random.choice((10, 30, 50, 100, 200, 500, 1000))) * 10000
        return {
            "credit_code": credit_code(code, self._serial),
            "name": f"{CITY}{self._faker.company()}",
            "enterprise_type": self._random.choice(ENTERPRISE_TYPES),
            "legal_representative": self._faker.name(),
            "legal_representative_id": self.person_id(code),
            "registered_capital": capital.quantize(decimal.Decimal("0.01")),
            "established_on": established,
            "district_code": code,
            "address": self.address(name),
            "business_scope": self._random.choice(SCOPES),
            "contact_phone": self.mobile() if self._random.random() < 0.8 else None,
            "status": "ACTIVE",
            "issued_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
        }
