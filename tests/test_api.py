"""The JSON API: answers equal pandas, bad input is a 400 naming the parameter, caching is safe."""

from __future__ import annotations

import itertools
import logging
from datetime import date
from urllib.parse import quote, urlencode

import pandas as pd
import pytest
from sqlalchemy import event

from bi_app import analytics, service
from bi_app.context import current_engine, current_models
from bi_app.jsonable import to_jsonable
from data_layer.bootstrap import load_demo_data
from data_layer.cache import ResultCache
from data_layer.demo_data import generate_orders_frame
from data_layer.engine import make_engine
from data_layer.filters import Filters
from data_layer.meta import data_version
from data_layer.schema import sales
from tests.support import IN_CI, URL_PASSWORD, net_revenue, stored_kpis

ENDPOINTS = list(service.ANALYSES)


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    frame = generate_orders_frame(2000, seed=42)
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["net"] = net_revenue(frame)
    return frame


def test_kpis_for_a_filtered_url_equal_pandas(client, orders: pd.DataFrame) -> None:
    response = client.get("/api/v1/kpis?region=North&region=East&start=2024-04-01&end=2024-06-30&segment=Premium")
    assert response.status_code == 200
    body = response.get_json()
    assert body["filters"]["regions"] == ["East", "North"]
    rows = orders[
        orders["region"].isin(["North", "East"])
        & orders["customer_segment"].eq("Premium")
        & orders["order_date"].between("2024-04-01", "2024-06-30")
    ]
    data = body["data"]
    assert data["revenue"]["value"] == pytest.approx(round(rows["net"].sum(), 2), abs=0.005)
    assert data["orders"]["value"] == len(rows)
    assert data["customers"]["value"] == rows["customer_id"].nunique()
    assert data["average_satisfaction"]["value"] == pytest.approx(rows["satisfaction_rating"].mean())


def test_segments_endpoint_equals_pandas(client, orders: pd.DataFrame) -> None:
    body = client.get("/api/v1/segments?category=Office").get_json()
    office = orders[orders["category"] == "Office"]
    expected = office.groupby("customer_segment")["net"].sum().round(2).to_dict()
    assert {row["segment"]: row["revenue"] for row in body["data"]} == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_endpoint_answers_what_the_analysis_computes(app, client, name: str) -> None:
    query = "region=South&start=2023-03-01&end=2024-08-31"
    response = client.get(f"/api/v1/{name}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    filters = Filters(regions=("South",), start=date(2023, 3, 1), end=date(2024, 8, 31))
    analysis = service.ANALYSES[name]
    with app.server.test_request_context():
        with current_engine().connect() as conn:
            models = {"models": current_models(conn, data_version(conn), data_version(conn))} if analysis.needs_models \
                else {}
            direct = analysis.function(conn, filters, **models)
    assert response.get_json()["data"] == to_jsonable(direct)


def test_analysis_parameters(client) -> None:
    histogram = client.get("/api/v1/distribution?bins=7").get_json()["data"]["histogram"]
    assert len(histogram) == 7 and sum(b["orders"] for b in histogram) == 2000
    assert client.get("/api/v1/lifecycle?churn_days=30").get_json()["data"]["churn_days"] == 30


def hostile_queries() -> list[tuple[str, str]]:
    """(endpoint, query string) pairs that must each be refused with a 400."""
    injections = [
        "North' OR '1'='1", "North'; DROP TABLE advanced_sales_data;--", "1) UNION SELECT version()--",
        "North\" --", "' OR 1=1 --", "North%", "%", "_", "*", "North OR 1=1", "<script>alert(1)</script>",
        "${jndi:ldap://x}", "../../etc/passwd", "Nörth", "🙂", "NORTH", "north", " North", "North ",
        "Laptop\u200b",
    ]
    cases: list[str] = []
    for parameter, value in itertools.product(["region", "segment", "category", "product"], injections):
        cases.append(urlencode({parameter: value}))
        # The same value beside valid filters: one bad value spoils the request.
        cases.append(urlencode([("start", "2023-06-01"), ("region", "North"), (parameter, value)]))
    bad_dates = ["2024-13-01", "2024-02-30", "20240101", "yesterday", "2024-01-01T00:00", "'; DROP TABLE x;--",
                 "0000-01-01", "9999-12-31", "2024/01/01", "01-02-2024", "2024-1-1", "NaN", "1e9", "-2024-01-01"]
    for parameter, value in itertools.product(["start", "end"], bad_dates):
        cases.append(urlencode({parameter: value}))
    cases += [
        "start=2024-05-01&end=2024-01-01",
        "start=2024-01-01&start=2024-02-01",
        "end=2024-01-01&end=2024-02-01",
        "foo=bar", "Region=North", "region%5B%5D=North", "__proto__=x", "select=1", "limit=10",
        "region=North%00", "region=%0d%0aSet-Cookie:%20x", "product=Laptop%FF", "segment=",
        "region=" + "A" * 1000, "&".join(["region=North"] * 101), "region=North&regoin=East",
        "start=2024-01-01%00", "category=Office&category=Offices", "product=" + quote("Laptop' --"),
    ]
    pairs = [(ENDPOINTS[i % len(ENDPOINTS)], query) for i, query in enumerate(cases)]
    numeric = ["0", "-1", "abc", "1e3", "9999999999", "2.5", "", " ", "10&bins=20", "0x10"]
    pairs += [("distribution", f"bins={quote(v, safe='&=')}") for v in numeric if v.strip()]
    pairs += [("lifecycle", f"churn_days={quote(v, safe='&=')}") for v in numeric if v.strip()]
    pairs += [("lifecycle", "churn_days=99999"), ("distribution", "bins=201"), ("kpis", "bins=5"),
              ("segments", "churn_days=10")]
    return pairs


HOSTILE = hostile_queries()


def test_there_are_at_least_200_hostile_queries() -> None:
    assert len(HOSTILE) >= 200
    assert len(set(HOSTILE)) == len(HOSTILE)


@pytest.mark.parametrize(("endpoint", "query"), HOSTILE)
def test_hostile_query_is_a_400_naming_the_parameter(client, endpoint: str, query: str) -> None:
    response = client.get(f"/api/v1/{endpoint}?{query}")
    assert response.status_code == 400, (query, response.get_data(as_text=True)[:300])
    error = response.get_json()["error"]
    assert error["code"] == "bad_parameter" and error["message"] and error["parameter"]


def test_openapi_lists_every_endpoint_and_parameter(client) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {f"/api/v1/{name}" for name in ENDPOINTS}
    for path in document["paths"].values():
        names = {p["name"] for p in path["get"]["parameters"]}
        assert {"start", "end", "region", "segment", "category", "product"} <= names
        assert {"200", "400", "503"} <= set(path["get"]["responses"])


def test_database_down_is_a_503_with_a_reference_to_the_logged_reason(client, point_app_at, caplog) -> None:
    point_app_at(f"postgresql://bi:{URL_PASSWORD}@127.0.0.1:1/shop")
    response = client.get("/api/v1/kpis")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "database_unavailable" and "try again" in error["message"]
    body = response.get_data(as_text=True)
    assert "Connection refused" not in body and "127.0.0.1" not in body and URL_PASSWORD not in body
    logged = [r.getMessage() for r in caplog.records if error["reference"] in r.getMessage()]
    assert logged and "Connection refused" in logged[0] and URL_PASSWORD not in logged[0]


def count_queries(engine) -> list[str]:  # noqa: ANN001
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_answers_are_cached_and_a_new_load_is_never_served_stale(db_url: str, client, app, point_app_at) -> None:
    engine = make_engine(db_url)
    load_demo_data(engine, 500, 1, replace=True)
    point_app_at(db_url)
    with app.server.test_request_context():
        statements = count_queries(current_engine())
    first = client.get("/api/v1/segments").get_json()["data"]
    computed = len(statements)
    again = client.get("/api/v1/segments").get_json()["data"]
    assert again == first
    analysis_queries = [s for s in statements[computed:] if "bi_metadata" not in s and "sqlite_master" not in s and s != "BEGIN"
                        and "pg_catalog" not in s and "pg_class" not in s and not s.startswith("SET LOCAL")]
    assert analysis_queries == [], "the second answer came from the cache"

    load_demo_data(engine, 300, 2, replace=True)  # a new data version
    fresh = client.get("/api/v1/segments").get_json()["data"]
    second = generate_orders_frame(300, seed=2)
    expected = net_revenue(second).groupby(second["customer_segment"]).sum().round(2)
    assert {row["segment"]: row["revenue"] for row in fresh} == pytest.approx(expected.to_dict(), abs=0.005)
    engine.dispose()


def test_rows_written_by_other_tools_make_a_new_version(db_url: str, client, app, point_app_at, plain_engine,  # noqa: ANN001
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's own tools insert and update rows with plain SQL: the KPIs (cached, from the summary
    table) follow, as soon as the change fingerprint is looked at again."""
    import data_layer.meta as meta

    monkeypatch.setattr(meta, "FRESHNESS_S", 0.0)  # look at every request (the app looks every 5 s)
    engine = make_engine(db_url)
    load_demo_data(engine, 300, 3, replace=True)
    point_app_at(db_url)
    loaded_version = client.get("/healthz").get_json()["data_version"]

    def kpis() -> dict:
        data = client.get("/api/v1/kpis").get_json()["data"]
        return {"revenue": data["revenue"]["value"], "orders": data["orders"]["value"]}

    assert kpis() == pytest.approx(stored_kpis(engine))
    trained = client.get("/api/v1/clusters").get_json()["data"]["model"]
    postgres = db_url.startswith("postgresql")
    # What PostgreSQL does when the writer's session next goes idle; asked for, so the test need not wait.
    flush = "SELECT pg_stat_force_next_flush();" if postgres else ""
    columns = ", ".join(c.name for c in sales.columns if c.name != "order_id")
    with plain_engine.begin() as conn:
        conn.exec_driver_sql(f"{flush} INSERT INTO advanced_sales_data (order_id, {columns}) SELECT 'OUTSIDE-1', "
                             f"{columns} FROM advanced_sales_data WHERE order_id = 'ORD-00000001'")
    inserted = kpis()
    assert inserted == pytest.approx(stored_kpis(engine)) and inserted["orders"] == 301
    version = client.get("/healthz").get_json()["data_version"]
    assert version != loaded_version
    # A few rows by others: the models of the load stay in use (no page waits for a retraining).
    assert client.get("/api/v1/clusters").get_json()["data"]["model"] == trained
    assert trained["data_version"] == loaded_version
    with plain_engine.begin() as conn:
        conn.exec_driver_sql(f"{flush} UPDATE advanced_sales_data SET total_amount = total_amount + 1000 "
                             "WHERE order_id = 'OUTSIDE-1'")
    updated = kpis()
    assert updated == pytest.approx(stored_kpis(engine)) and updated["revenue"] == pytest.approx(
        inserted["revenue"] + 1000)
    assert client.get("/healthz").get_json()["data_version"] not in (version, loaded_version)
    load_demo_data(engine, 200, 4, replace=True)  # a load of ours is its own version again, no outside change
    assert client.get("/healthz").get_json()["data_version"] == version_stamped(engine)
    engine.dispose()


def test_models_are_retrained_in_the_background_once_a_tenth_of_the_lines_changed(
        db_url: str, client, app, point_app_at, plain_engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Other tools add customers' orders: under a tenth of the lines, the load's models stay; past it, a
    page starts a retraining in a process of its own (once) and keeps answering with the models it has;
    once the retraining saved its models, pages use them. ``bi-app train`` then has nothing to do."""
    from click.testing import CliRunner

    import bi_app.context as context
    import data_layer.meta as meta
    from bi_app.cli import main
    from bi_app.context import CONFIG_KEY
    from bi_app.ml.models import RETRAIN_SHARE

    monkeypatch.setattr(meta, "FRESHNESS_S", 0.0)  # look at every request (the app looks every 5 s)
    started: list[str] = []
    monkeypatch.setattr(context, "start_training", lambda config: started.append(config.database_url))
    engine = make_engine(db_url)
    load_demo_data(engine, 300, 3, replace=True)
    point_app_at(db_url)

    def model() -> dict:
        return client.get("/api/v1/clusters").get_json()["data"]["model"]

    def customers() -> int:
        with engine.connect() as conn:
            return pd.read_sql("SELECT customer_id FROM advanced_sales_data", conn)["customer_id"].nunique()

    trained = model()
    assert trained["trained_on_customers"] == customers()
    flush = "SELECT pg_stat_force_next_flush();" if db_url.startswith("postgresql") else ""
    columns = ", ".join(c.name for c in sales.columns if c.name not in ("order_id", "customer_id"))

    def add_orders(first: int, count: int) -> None:
        with plain_engine.begin() as conn:
            for number in range(first, first + count):
                conn.exec_driver_sql(
                    f"{flush} INSERT INTO advanced_sales_data (order_id, customer_id, {columns}) SELECT "
                    f"'OUTSIDE-{number}', 'NEW-{number}', {columns} FROM advanced_sales_data "
                    "WHERE order_id = 'ORD-00000001'")

    below = int(300 * RETRAIN_SHARE) - 1
    add_orders(0, below)
    assert model() == trained and started == []
    add_orders(below, 2)  # now past the share
    assert model() == trained and len(started) == 1  # answered at once, with the models it has
    assert model() == trained and len(started) == 1  # one retraining started, not one per request

    config = app.server.config[CONFIG_KEY]
    env = {"BI_DATABASE_URL": db_url, "BI_DATA_DIR": str(config.data_dir)}
    retrained = CliRunner().invoke(main, ["train"], env=env)  # what the started process runs
    assert retrained.exit_code == 0, retrained.output
    assert f"Retrained: {below + 2:,} order lines changed since training" in retrained.output
    now = model()
    assert now["trained_at"] != trained["trained_at"] and now["trained_on_customers"] == customers() == \
        trained["trained_on_customers"] + below + 2
    again = CliRunner().invoke(main, ["train"], env=env)
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    engine.dispose()


def version_stamped(engine) -> str:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT value FROM bi_metadata WHERE key = 'data_version'").scalar_one()


REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_cache() -> ResultCache:
    cache = ResultCache.from_url(REDIS_URL)
    try:
        cache.backend._write_client.ping()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"Redis not reachable at {REDIS_URL} (CI=true: the Redis tests must run): {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    cache.clear()
    yield cache
    cache.clear()


def test_redis_cache_is_shared_between_workers(redis_cache: ResultCache) -> None:
    other_worker = ResultCache.from_url(REDIS_URL)
    frame = pd.DataFrame({"segment": ["Bulk"], "revenue": [1.5]})
    assert redis_cache.get_or_compute("k", lambda: frame).equals(frame)
    assert other_worker.get_or_compute("k", lambda: pytest.fail("should come from Redis")).equals(frame)


def test_the_app_serves_from_redis(client, point_app_at, redis_cache: ResultCache, app) -> None:
    point_app_at(app.server.config["BI_CONFIG"].database_url, cache_url=REDIS_URL)
    first = client.get("/api/v1/regions").get_json()
    assert redis_cache.backend._read_client.dbsize() >= 1
    assert client.get("/api/v1/regions").get_json() == first


def test_redis_down_computes_uncached_and_warns(client, point_app_at, app, caplog: pytest.LogCaptureFixture) -> None:
    point_app_at(app.server.config["BI_CONFIG"].database_url, cache_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="data_layer.cache"):
        response = client.get("/api/v1/kpis")
    assert response.status_code == 200
    assert response.get_json()["data"]["orders"]["value"] == 2000
    assert any("computing without the cache" in r.getMessage() for r in caplog.records)


def test_analytics_registry_matches_the_packages() -> None:
    from bi_app.ml import analyses, strategy

    ml = {analyses.clusters, analyses.rfm, analyses.churn, analyses.forecast, strategy.recommendations}
    assert {a.function for a in service.ANALYSES.values()} == {
        getattr(analytics, name) for name in analytics.__all__
    } | ml
    assert {name for name, a in service.ANALYSES.items() if a.needs_models} == {"clusters", "churn", "recommendations"}


def test_a_period_preset_answers_for_the_days_it_stands_for(client, orders: pd.DataFrame) -> None:
    """``period=last-30-days``: the 30 days up to the data's last order; month to date is compared like
    for like with the same days of the month before; a bad preset is a 400 naming it."""
    last = orders["order_date"].max()
    window = orders[orders["order_date"].between(last - pd.Timedelta(days=29), last)]
    answer = client.get("/api/v1/kpis?period=last-30-days&region=North").get_json()["data"]
    north = window[window["region"] == "North"]
    assert answer["revenue"]["value"] == pytest.approx(round(north["net"].sum(), 2), abs=0.005)
    assert answer["period"]["start"] == (last - pd.Timedelta(days=29)).date().isoformat()
    month = client.get("/api/v1/kpis?period=month-to-date").get_json()["data"]
    assert month["period"]["partial"] == (last.day < last.days_in_month)
    first = last.replace(day=1)
    now = orders[orders["order_date"].between(first, last)]["net"].sum()
    before = orders[orders["order_date"].between(first - pd.DateOffset(months=1), last - pd.DateOffset(months=1))]
    assert month["revenue"]["change"] == pytest.approx(now / before["net"].sum() - 1, abs=1e-4)
    bad = client.get("/api/v1/kpis?period=fortnight")
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "period"
    both = client.get("/api/v1/kpis?period=all&start=2024-01-01")
    assert both.status_code == 400 and "not both" in both.get_json()["error"]["message"]


def test_the_api_root_lists_its_endpoints_as_json(client) -> None:
    body = client.get("/api/v1/").get_json()
    assert set(body["endpoints"]) == {f"/api/v1/{name}" for name in service.ANALYSES}
    assert body["openapi"] == "/api/v1/openapi.json"
