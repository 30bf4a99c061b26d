"""Realistic, generated records for the demo departments; nothing real.

Seedable: the same seed gives the same records on the same day (dates are drawn relative
to today), so tests and demos can be repeated.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import random
from importlib.resources import files
from typing import Any

from faker import Faker

from xbus.core.catalog import Dataset
from xbus.core.identifiers import credit_code, resident_id

CITY = "杭州市"
PROVINCE = "浙江省"
# The city's districts (administrative division code: name), also the demo's reference
# table for lookups.
DISTRICTS: dict[str, str] = json.loads(
    files("xbus.producers").joinpath("resources", "districts.json").read_text(encoding="utf-8")
)
ENTERPRISE_TYPES = (
    "有限责任公司(自然人投资或控股)",
    "有限责任公司(自然人独资)",
    "股份有限公司(非上市)",
    "个人独资企业",
    "合伙企业",
)
VACCINES = (
    ("0201", "乙肝疫苗", "北京生物制品研究所"),
    ("0801", "麻腮风疫苗", "上海生物制品研究所"),
    ("1701", "流感疫苗", "华兰生物疫苗股份有限公司"),
    ("2801", "23价肺炎球菌多糖疫苗", "成都生物制品研究所"),
    ("3601", "带状疱疹疫苗", "长春百克生物科技股份公司"),
)
REACTIONS = ("接种部位红肿", "低热", "乏力", "皮疹")
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
        """A resident identity number of a person aged ``min_age`` to ``max_age`` registered
        in ``region``."""
        today = dt.date.today()
        birth = today - dt.timedelta(days=self._random.randint(min_age * 365 + 1, max_age * 365))
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

    def clinic(self) -> dict[str, Any]:
        """A vaccination clinic of the city."""
        code, name = self.district()
        return {
            "clinic_code": f"{code}{self._random.randrange(100):02d}",
            "name": f"{name}{self._faker.street_name()}社区卫生服务中心预防接种门诊",
            "district_code": code,
            "address": self.address(name),
            "phone": f"0571-{self._random.randrange(10**7, 10**8)}",
            "opening_hours": "周一至周五 08:00-11:30, 13:30-16:30",
        }

    def vaccination_record(self) -> dict[str, Any]:
        """One dose given at a clinic."""
        code, _ = self.district()
        birth = dt.date.today() - dt.timedelta(days=self._random.randint(200, 80 * 365))
        vaccine = self._random.choice(VACCINES)
        sex = self._random.choice(("FEMALE", "MALE"))
        return {
            "record_id": f"VR{self._random.randrange(10**11, 10**12)}",
            "person": {
                "name": self._faker.name_female() if sex == "FEMALE" else self._faker.name_male(),
                "id_number": resident_id(code, birth, self._random.randrange(1000)),
                "birth_date": birth,
                "sex": sex,
                "district_code": code,
            },
            "vaccine": {
                "code": vaccine[0],
                "name": vaccine[1],
                "manufacturer": vaccine[2],
                "batch_no": f"{dt.date.today():%Y}{self._random.randrange(10**5):05d}",
            },
            "dose_number": self._random.randint(1, 3),
            "administered_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
            "clinic_code": f"{code}{self._random.randrange(100):02d}",
            "adverse_reaction": (
                self._random.choice(REACTIONS) if self._random.random() < 0.05 else None
            ),
        }

    def insurance_contribution(self) -> dict[str, Any]:
        """A month's contribution of an employer for one employee."""
        code, _ = self.district()
        self._serial += 1
        base = decimal.Decimal(self._random.randrange(4462, 24930))
        kind = self._random.choice(
            ("PENSION", "MEDICAL", "UNEMPLOYMENT", "WORK_INJURY", "MATERNITY")
        )
        employer_rate, employee_rate = {
            "PENSION": ("0.14", "0.08"),
            "MEDICAL": ("0.099", "0.02"),
            "UNEMPLOYMENT": ("0.005", "0.005"),
            "WORK_INJURY": ("0.002", "0"),
            "MATERNITY": ("0.008", "0"),
        }[kind]
        cent = decimal.Decimal("0.01")
        paid = self._random.random() < 0.9
        month = dt.date.today().replace(day=1) - dt.timedelta(days=1)
        return {
            "contribution_id": f"SI{self._random.randrange(10**13, 10**14)}",
            "employer": {
                "credit_code": credit_code(code, self._serial),
                "name": f"{CITY}{self._faker.company()}",
            },
            "insured": {"name": self._faker.name(), "id_number": self.person_id(code)},
            "insurance_type": kind,
            "period": f"{month:%Y-%m}",
            "contribution_base": base.quantize(cent),
            "employer_amount": (base * decimal.Decimal(employer_rate)).quantize(cent),
            "employee_amount": (base * decimal.Decimal(employee_rate)).quantize(cent),
            "paid_on": dt.date.today() - dt.timedelta(days=self._random.randint(0, 10))
            if paid
            else None,
            "status": "PAID" if paid else "DUE",
        }

    def _party(self, code: str, sex: str) -> dict[str, Any]:
        birth = dt.date.today() - dt.timedelta(days=self._random.randint(22 * 365, 60 * 365))
        sequence = self._random.randrange(500) * 2 + (1 if sex == "MALE" else 0)
        return {
            "name": self._faker.name_male() if sex == "MALE" else self._faker.name_female(),
            "id_number": resident_id(code, birth, sequence),
            "birth_date": birth,
            "household_district_code": code if self._random.random() < 0.7 else None,
        }

    def marriage_registration(self) -> dict[str, Any]:
        """A marriage (now and then a divorce) registered at a district office."""
        code, _ = self.district()
        today = dt.date.today()
        return {
            "registration_no": f"J{code}-{today:%Y}-{self._random.randrange(10**6):06d}",
            "kind": "MARRIAGE" if self._random.random() < 0.8 else "DIVORCE",
            "party_a": self._party(code, "MALE"),
            "party_b": self._party(self.district()[0], "FEMALE"),
            "registered_on": today,
            "office_code": f"MZ{code}",
            "district_code": code,
        }

    def adoption_registration(self) -> dict[str, Any]:
        """An adoption registration (a dataset that never leaves its department)."""
        code, _ = self.district()
        return {
            "registration_no": f"SY{code}-{self._random.randrange(10**6):06d}",
            "adopter_id_number": self.person_id(code, min_age=30, max_age=55),
            "child_id_number": self.person_id(code, min_age=0, max_age=10)
            if self._random.random() < 0.6
            else None,
            "registered_on": dt.date.today(),
        }

    def record(self, dataset: Dataset) -> dict[str, Any]:
        """A new record of ``dataset``."""
        make = getattr(self, dataset.name, None)
        if make is None:
            raise ValueError(f"no demo data for {dataset.qualified_name}")
        record: dict[str, Any] = make()
        return record
