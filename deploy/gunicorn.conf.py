"""gunicorn's settings for a deployment: ``gunicorn -c deploy/gunicorn.conf.py bi_app.wsgi:server``.

Read by the systemd unit (``bi-app.service``) and the end-to-end test (``tests/test_deployment.py``).
Each value an operator may want to change comes from an environment variable (``/etc/bi-app/env``).
The master process holds no app (``preload_app`` off): each worker builds its own after the fork, so
the master stays small and a worker killed or recycled is simply replaced.
"""

import os
import shutil
import tempfile

#: Where gunicorn listens; nginx on the same host proxies to it.
bind = os.environ.get("BI_BIND", "127.0.0.1:8050")
#: Worker processes: one per core plus one (a page view's requests are CPU work in pandas and the
#: database driver; more processes than cores only queue them).
workers = int(os.environ.get("BI_WORKERS") or (os.cpu_count() or 1) + 1)
#: Threads per worker: requests waiting on the database or Redis let others run.
threads = int(os.environ.get("BI_THREADS", "8"))
worker_class = "gthread"
#: The longest request (an XLSX workbook of a large filter) and nginx's proxy_read_timeout agree.
timeout = int(os.environ.get("BI_WORKER_TIMEOUT_S", "120"))
graceful_timeout = 30
#: Longer than nginx's upstream keepalive_timeout (60 s, deploy/nginx-site.conf): the proxy closes an idle
#: connection first, never sends a request on one gunicorn is closing (a reset it would answer 502 for).
keepalive = 75
#: Workers are replaced after this many requests (memory that pandas and numpy leave fragmented).
max_requests = 5000
max_requests_jitter = 500
#: A link with dozens of long product names chosen is a long request line: gunicorn's most.
limit_request_line = 8190
preload_app = False
#: No control socket: a fixed path per user would be shared by every instance on the host.
control_socket_disable = True
#: The workers' heartbeat files in memory, not on a disk that may be slow or read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
#: nginx on this host sets X-Forwarded-Proto; the app reads X-Forwarded-For itself (BI_TRUSTED_PROXIES).
forwarded_allow_ips = "127.0.0.1,::1"
#: The app logs each request itself, as JSON with its id, user and timings (BI_LOG_FORMAT=json):
#: gunicorn's own access log would be a second, less useful line per request.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("BI_LOG_LEVEL", "info").lower()
if os.environ.get("BI_LOG_FORMAT", "text").lower() == "json":
    # gunicorn's own lines (workers started, stopped, timed out) as JSON too; the app's own handler on the
    # root logger adds each line's request id and user, so the root gets none here.
    logconfig_dict = {
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False,
                               "qualname": "gunicorn.error"},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False, "qualname": "gunicorn.access"},
        },
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "{asctime}{levelname}{name}{message}",
                                "style": "{", "rename_fields": {"asctime": "time", "levelname": "level"}}},
    }

#: The metrics of every worker, summed at each scrape of /metrics (prometheus_client's multiprocess
#: mode). Set before any worker imports the app; emptied when the server starts.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(
    os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir(), f"bi-app-metrics-{bind.replace(':', '-')}"))


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
