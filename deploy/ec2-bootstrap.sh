#!/usr/bin/env bash
# From a clean Amazon Linux 2023 instance to the dashboard over HTTPS: run as root, as the instance's
# user data or with sudo. Safe to run again (it updates the code and keeps the settings it wrote).
# docs/DEPLOY.md walks through it; its settings come from the environment:
#
#   BI_SITE_NAME           the site's DNS name, e.g. bi.example.com (required)
#   BI_DATABASE_URL        the database the dashboards read: the RDS primary or a read replica (required),
#                          e.g. postgresql://bi_reader@shop.xxxx.rds.amazonaws.com:5432/shop?sslmode=require
#   BI_DATABASE_WRITE_URL  the primary, as a role that may write (default: BI_DATABASE_URL)
#   BI_PGPASS_FILE         libpq's password file with the roles' passwords (host:port:database:user:password
#                          lines), installed for the service as /etc/bi-app/pgpass; leave the URLs without them
#   BI_CACHE_URL           a shared Redis, e.g. ElastiCache (default: Redis installed on this instance)
#   BI_REPO_URL, BI_REF    where the code comes from (default: this repository's origin, branch main)
#   BI_ADMIN_NAME          the first admin (default: admin); the password is BI_ADMIN_PASSWORD, or one
#                          made here and left in /root/bi-app-admin-password (root only)
#   BI_SECRET_KEY          default: made here once, kept in /etc/bi-app/env
#   BI_CERTBOT_EMAIL       when set, a Let's Encrypt certificate is fetched at once (the DNS name must
#                          already point at this instance); else a self-signed one until you do
#   BI_SMTP_URL            the mail server for emailed reports and alerts, e.g.
#                          smtp://SMTP_USER@email-smtp.eu-west-1.amazonaws.com:587 (Amazon SES); its password is
#                          BI_SMTP_PASSWORD; the sender BI_MAIL_FROM (default: reports@BI_SITE_NAME)
set -euo pipefail

: "${BI_SITE_NAME:?set BI_SITE_NAME to the DNS name of the site}"
: "${BI_DATABASE_URL:?set BI_DATABASE_URL to the database the dashboards read}"
BI_DATABASE_WRITE_URL="${BI_DATABASE_WRITE_URL:-$BI_DATABASE_URL}"
BI_REPO_URL="${BI_REPO_URL:-https://github.com/example/bi-app.git}"
BI_REF="${BI_REF:-main}"
BI_ADMIN_NAME="${BI_ADMIN_NAME:-admin}"
APP_DIR=/opt/bi-app
ENV_FILE=/etc/bi-app/env
TLS_DIR=/etc/bi-app/tls

say() { printf '== %s\n' "$*"; }

say "Packages"
packages=(python3.11 python3.11-pip git nginx openssl)
[ -z "${BI_CACHE_URL:-}" ] && packages+=(redis6)
dnf install -y -q "${packages[@]}"
# The browser that prints executive summaries: Amazon Linux 2023 has no Chromium package; Google's Chrome
# RPM brings its libraries with it (x86_64 only: on Graviton, set BI_BROWSER to a Chromium you install).
if [ "$(uname -m)" = x86_64 ] && ! command -v google-chrome >/dev/null; then
  dnf install -y -q https://dl.google.com/linux/direct/google-chrome-stable_current_x86_64.rpm
fi

say "The bi-app user and folders"
id bi-app >/dev/null 2>&1 || useradd --system --home-dir /var/lib/bi-app --shell /sbin/nologin bi-app
install -d -m 0750 -o root -g bi-app /etc/bi-app
install -d -m 0750 -o root -g root "$TLS_DIR"
install -d -m 0755 /var/www/letsencrypt

say "The code ($BI_REPO_URL, $BI_REF) and its virtual environment"
if [ -d "$APP_DIR/.git" ]; then
  git -C "$APP_DIR" fetch --quiet origin "$BI_REF"
  git -C "$APP_DIR" checkout --quiet --force FETCH_HEAD
else
  git clone --quiet --branch "$BI_REF" "$BI_REPO_URL" "$APP_DIR"
fi
python3.11 -m venv "$APP_DIR/.venv"
"$APP_DIR/.venv/bin/pip" install --quiet --upgrade pip
"$APP_DIR/.venv/bin/pip" install --quiet "$APP_DIR"

say "Settings in $ENV_FILE"
if [ -z "${BI_CACHE_URL:-}" ]; then
  systemctl enable --now redis6
  BI_CACHE_URL=redis://127.0.0.1:6379/0
fi
if [ -f "$ENV_FILE" ] && grep -q '^BI_SECRET_KEY=.' "$ENV_FILE"; then
  BI_SECRET_KEY="${BI_SECRET_KEY:-$(sed -n 's/^BI_SECRET_KEY=//p' "$ENV_FILE")}"
fi
BI_SECRET_KEY="${BI_SECRET_KEY:-$(python3.11 -c 'import secrets; print(secrets.token_urlsafe(48))')}"
umask 027
if [ -n "${BI_PGPASS_FILE:-}" ]; then
  install -m 0600 -o bi-app -g bi-app "$BI_PGPASS_FILE" /etc/bi-app/pgpass
fi
cat > "$ENV_FILE.new" <<EOF
PGPASSFILE=/etc/bi-app/pgpass
BI_SECRET_KEY=$BI_SECRET_KEY
BI_DATABASE_URL=$BI_DATABASE_URL
BI_DATABASE_WRITE_URL=$BI_DATABASE_WRITE_URL
BI_CACHE_URL=$BI_CACHE_URL
BI_TRUSTED_PROXIES=1
BI_HTTPS=1
BI_LOG_LEVEL=INFO
BI_LOG_FORMAT=json
BI_BASE_URL=https://$BI_SITE_NAME
BI_SMTP_URL=${BI_SMTP_URL:-}
BI_SMTP_PASSWORD=${BI_SMTP_PASSWORD:-}
BI_MAIL_FROM=${BI_MAIL_FROM:-reports@$BI_SITE_NAME}
EOF
chown root:bi-app "$ENV_FILE.new"
mv "$ENV_FILE.new" "$ENV_FILE"
umask 022

say "The first admin ($BI_ADMIN_NAME)"
# A command as the bi-app user with the service's settings (read line by line: URLs may hold & or ?).
# shellcheck disable=SC2016  # the inner script expands its own variables
run_as_app() {
  runuser -u bi-app -- bash -c 'while IFS= read -r line; do case $line in ""|"#"*) ;; *) export "$line" ;; esac
    done < /etc/bi-app/env; export BI_DATA_DIR=/var/lib/bi-app; exec "$@"' run_as_app "$@"
}
install -d -m 0750 -o bi-app -g bi-app /var/lib/bi-app
if ! run_as_app "$APP_DIR/.venv/bin/bi-app" users list | grep -q "^$BI_ADMIN_NAME ("; then
  if [ -z "${BI_ADMIN_PASSWORD:-}" ]; then
    BI_ADMIN_PASSWORD="$(python3.11 -c 'import secrets; print(secrets.token_urlsafe(18))')"
    (umask 077; printf '%s\n' "$BI_ADMIN_PASSWORD" > /root/bi-app-admin-password)
    say "The admin's password is in /root/bi-app-admin-password: sign in, change it, delete the file"
  fi
  printf '%s\n' "$BI_ADMIN_PASSWORD" | run_as_app "$APP_DIR/.venv/bin/bi-app" users add "$BI_ADMIN_NAME" --role admin
fi

say "The app's service and the report scheduler's"
install -m 0644 "$APP_DIR/deploy/bi-app.service" /etc/systemd/system/bi-app.service
install -m 0644 "$APP_DIR/deploy/bi-scheduler.service" /etc/systemd/system/bi-scheduler.service
systemctl daemon-reload
systemctl enable bi-app bi-scheduler
systemctl restart bi-app bi-scheduler

say "nginx for $BI_SITE_NAME"
if [ ! -s "$TLS_DIR/fullchain.pem" ]; then  # self-signed until the real certificate comes
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$BI_SITE_NAME" \
    -addext "subjectAltName=DNS:$BI_SITE_NAME" \
    -keyout "$TLS_DIR/privkey.pem" -out "$TLS_DIR/fullchain.pem" 2>/dev/null
  chmod 0600 "$TLS_DIR/privkey.pem"
fi
sed "s/bi\.example\.com/$BI_SITE_NAME/g" "$APP_DIR/deploy/nginx-site.conf" > /etc/nginx/conf.d/bi-app.conf
if command -v getenforce >/dev/null && [ "$(getenforce)" = Enforcing ]; then
  setsebool -P httpd_can_network_connect 1  # nginx may connect to gunicorn on 127.0.0.1:8050
fi
nginx -t -q
systemctl enable nginx
systemctl reload-or-restart nginx

if [ -n "${BI_CERTBOT_EMAIL:-}" ]; then
  say "A Let's Encrypt certificate for $BI_SITE_NAME"
  python3.11 -m venv /opt/certbot
  /opt/certbot/bin/pip install --quiet certbot
  /opt/certbot/bin/certbot certonly --non-interactive --agree-tos --email "$BI_CERTBOT_EMAIL" \
    --webroot -w /var/www/letsencrypt -d "$BI_SITE_NAME" \
    --deploy-hook "install -m 0644 \$RENEWED_LINEAGE/fullchain.pem $TLS_DIR/fullchain.pem && install -m 0600 \$RENEWED_LINEAGE/privkey.pem $TLS_DIR/privkey.pem && systemctl reload nginx"
  echo "0 3 * * * root /opt/certbot/bin/certbot renew --quiet" > /etc/cron.d/certbot-renew
fi

say "Check"
for _ in $(seq 1 60); do
  curl -fsk --resolve "$BI_SITE_NAME:443:127.0.0.1" "https://$BI_SITE_NAME/healthz" >/dev/null && break
  sleep 2
done
curl -fsk --resolve "$BI_SITE_NAME:443:127.0.0.1" "https://$BI_SITE_NAME/healthz"
echo
say "Done: https://$BI_SITE_NAME/ (sign in as $BI_ADMIN_NAME)"
