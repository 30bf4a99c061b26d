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

CITY = "上海市"
# Shanghai's 16 districts (administrative division code: name), also the demo's reference
# table for lookups.
DISTRICTS: dict[str, str] = json.loads(
    files("xbus.producers").joinpath("resources", "districts.json").read_text(encoding="utf-8")
)
# Residents of each district in ten thousands (2020 census, rounded): districts are drawn in
# proportion, so that Pudong, a quarter of the city, has a new licence every few seconds.
RESIDENTS: dict[str, int] = {
    "310101": 66,
    "310104": 111,
    "310105": 69,
    "310106": 98,
    "310107": 124,
    "310109": 76,
    "310110": 124,
    "310112": 265,
    "310113": 224,
    "310114": 183,
    "310115": 568,
    "310116": 82,
    "310117": 191,
    "310118": 127,
    "310120": 114,
    "310151": 64,
}
# A few real roads of each district, so that a generated address reads like one of the city.
ROADS: dict[str, tuple[str, ...]] = {
    "310101": ("南京东路", "淮海中路", "西藏中路", "复兴东路", "中山南路"),
    "310104": ("漕溪北路", "衡山路", "肇嘉浜路", "龙华中路", "虹桥路"),
    "310105": ("天山路", "仙霞路", "长宁路", "延安西路", "愚园路"),
    "310106": ("南京西路", "武定路", "大统路", "共和新路", "江宁路"),
    "310107": ("曹杨路", "真北路", "长寿路", "武宁路", "中山北路"),
    "310109": ("四川北路", "曲阳路", "东大名路", "西江湾路", "大连路"),
    "310110": ("黄兴路", "国定路", "控江路", "平凉路", "淞沪路"),
    "310112": ("七莘路", "都市路", "虹井路", "剑川路", "沪闵路"),
    "310113": ("牡丹江路", "友谊路", "呼兰路", "宝杨路"),
    "310114": ("博乐路", "城中路", "曹安公路", "嘉松北路", "墨玉路"),
    "310115": ("世纪大道", "张杨路", "陆家嘴环路", "东方路", "金科路", "川沙路"),
    "310116": ("卫零路", "龙航路", "蒙山路"),
    "310117": ("中山中路", "人民北路", "文翔路", "荣乐东路", "沪亭北路"),
    "310118": ("公园路", "城中北路", "外青松公路", "崧泽大道"),
    "310120": ("解放东路", "百齐路", "望园路", "南奉公路", "金海公路"),
    "310151": ("八一路", "鳌山路", "陈海公路", "崇明大道"),
}
# A few subdistricts and towns (街道, 镇) of each district: where clinics and offices are.
SUBDISTRICTS: dict[str, tuple[str, ...]] = {
    "310101": ("外滩街道", "南京东路街道", "打浦桥街道", "豫园街道"),
    "310104": ("枫林街道", "天平街道", "徐家汇街道", "漕河泾街道"),
    "310105": ("天山路街道", "仙霞新村街道", "新华路街道", "虹桥街道"),
    "310106": ("静安寺街道", "江宁路街道", "彭浦新村街道", "大宁路街道"),
    "310107": ("曹杨新村街道", "长寿路街道", "真如镇街道", "桃浦镇"),
    "310109": ("欧阳路街道", "曲阳路街道", "四川北路街道", "江湾镇街道"),
    "310110": ("五角场街道", "控江路街道", "平凉路街道", "新江湾城街道"),
    "310112": ("莘庄镇", "七宝镇", "江川路街道", "古美路街道"),
    "310113": ("友谊路街道", "吴淞街道", "大场镇", "顾村镇"),
    "310114": ("嘉定镇街道", "安亭镇", "南翔镇", "江桥镇"),
    "310115": ("陆家嘴街道", "花木街道", "塘桥街道", "张江镇", "川沙新镇"),
    "310116": ("石化街道", "朱泾镇", "枫泾镇", "山阳镇"),
    "310117": ("岳阳街道", "方松街道", "九亭镇", "泗泾镇"),
    "310118": ("夏阳街道", "盈浦街道", "朱家角镇", "徐泾镇"),
    "310120": ("南桥镇", "奉浦街道", "金汇镇", "庄行镇"),
    "310151": ("城桥镇", "堡镇", "陈家镇", "新河镇"),
}
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

# What citizens call the 12345 hotline about: (category, the office of the district that
# handles it, (request type, what the operator writes down; {place} is where)).
HOTLINE_TOPICS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "城市管理",
        "城管执法局",
        (
            ("COMPLAINT", "{place}工地夜间施工,噪音扰民,请求查处"),
            ("COMPLAINT", "{place}人行道上共享单车乱停放,影响通行"),
            ("SUGGESTION", "建议在{place}增设垃圾分类投放点"),
        ),
    ),
    (
        "交通出行",
        "建设和管理委员会",
        (
            ("HELP", "{place}路口信号灯故障,请尽快维修"),
            ("COMPLAINT", "{place}附近公交站候车时间过长"),
            ("SUGGESTION", "建议{place}增设非机动车停放点"),
        ),
    ),
    (
        "住房保障",
        "房屋管理局",
        (
            ("HELP", "{place}小区电梯故障多日未修"),
            ("ENQUIRY", "咨询公共租赁住房申请条件和办理流程"),
        ),
    ),
    (
        "生态环境",
        "生态环境局",
        (
            ("COMPLAINT", "{place}沿街餐饮店油烟扰民"),
            ("COMPLAINT", "{place}附近河道有异味"),
        ),
    ),
    (
        "市场监管",
        "市场监督管理局",
        (
            ("COMPLAINT", "在{place}一家超市购买的食品已过保质期"),
            ("ENQUIRY", "咨询开办企业在一网通办上的办理时限"),
        ),
    ),
    (
        "社会保障",
        "人力资源和社会保障局",
        (
            ("ENQUIRY", "咨询灵活就业人员缴纳社会保险的办法"),
            ("HELP", "单位未按时为员工缴纳社会保险"),
        ),
    ),
    (
        "公共服务",
        "人民政府",
        (
            ("HELP", "{place}路灯不亮,夜间出行不便"),
            ("PRAISE", "表扬{place}社区卫生服务中心工作人员耐心细致"),
        ),
    ),
)
HOTLINE_CHANNELS = ("PHONE", "PHONE", "PHONE", "WEB", "APP", "WECHAT")


class DemoData:
    """A seedable source of generated department records."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._faker = Faker("zh_CN")
        self._faker.seed_instance(seed)
        self._serial = self._random.randrange(10**7, 10**8)

    def district(self) -> tuple[str, str]:
        """A district of the city, drawn in proportion to its residents: ``(code, name)``."""
        codes = sorted(DISTRICTS)
        [code] = self._random.choices(codes, weights=[RESIDENTS[c] for c in codes])
        return code, DISTRICTS[code]

    def address(self, district_code: str) -> str:
        """A street address in the district ``district_code``: city, district, road, number
        (now and then a lane, 弄, with its house number)."""
        road = self._random.choice(ROADS[district_code])
        number = f"{self._random.randint(1, 1999)}号"
        if self._random.random() < 0.3:
            number = f"{self._random.randint(1, 999)}弄{self._random.randint(1, 60)}号"
        return f"{CITY}{DISTRICTS[district_code]}{road}{number}"

    def company_name(self) -> str:
        """An enterprise name as Shanghai registers them: the city, a trade name, the trade
        and the form (上海...有限公司)."""
        return f"上海{self._faker.company()}"

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
        code, _ = self.district()
        self._serial += 1
        established = dt.date.today() - dt.timedelta(days=self._random.randint(0, 30))
        capital = decimal.Decimal(self._random.choice((10, 30, 50, 100, 200, 500, 1000))) * 10000
        return {
            "credit_code": credit_code(code, self._serial),
            "name": self.company_name(),
            "enterprise_type": self._random.choice(ENTERPRISE_TYPES),
            "legal_representative": self._faker.name(),
            "legal_representative_id": self.person_id(code),
            "registered_capital": capital.quantize(decimal.Decimal("0.01")),
            "established_on": established,
            "district_code": code,
            "address": self.address(code),
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
            "name": f"{name}{self._random.choice(SUBDISTRICTS[code])}社区卫生服务中心预防接种门诊",
            "district_code": code,
            "address": self.address(code),
            "phone": f"021-{self._random.randrange(5 * 10**7, 7 * 10**7)}",
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
                "name": self.company_name(),
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

    def service_request(self) -> dict[str, Any]:
        """A request just taken by the 12345 citizen service hotline: received, or already
        dispatched to the district office that handles its category."""
        code, name = self.district()
        category, office, cases = self._random.choice(HOTLINE_TOPICS)
        request_type, text = self._random.choice(cases)
        road = self._random.choice(ROADS[code])
        place = f"{name}{road}{self._random.randint(1, 1999)}号"
        dispatched = self._random.random() < 0.6
        received = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._serial += 1
        return {
            "request_id": f"{received + dt.timedelta(hours=8):%Y%m%d}{self._serial % 10**6:06d}",
            "channel": self._random.choice(HOTLINE_CHANNELS),
            "citizen_name": self._faker.name(),
            "citizen_phone": self.mobile(),
            "request_type": request_type,
            "category": category,
            "content": text.format(place=f"{name}{road}"),
            "district_code": code,
            "location": place if "{place}" in text else None,
            "received_at": received,
            "handling_unit": f"{name}{office}" if dispatched else None,
            "status": "DISPATCHED" if dispatched else "RECEIVED",
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
