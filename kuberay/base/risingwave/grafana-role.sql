-- cryptopred_grafana: the user of Grafana's RisingWave datasource. Run by the Job
-- `risingwave-init` after init.sql, with the password of the Secret `grafana-db` in the psql
-- variable grafana_password. It may read the tables the dashboards chart and nothing else;
-- running this again resets its password to the Secret's. A unit test compares the granted
-- tables with the ones the dashboards' SQL reads.

SELECT count(*) > 0 AS grafana_role_exists
FROM pg_catalog.pg_user WHERE usename = 'cryptopred_grafana' \gset

\if :grafana_role_exists
ALTER USER cryptopred_grafana WITH NOSUPERUSER NOCREATEDB NOCREATEUSER LOGIN PASSWORD :'grafana_password';
\else
CREATE USER cryptopred_grafana WITH NOSUPERUSER NOCREATEDB NOCREATEUSER LOGIN PASSWORD :'grafana_password';
\endif

GRANT CONNECT ON DATABASE dev TO cryptopred_grafana;
GRANT USAGE ON SCHEMA public TO cryptopred_grafana;
GRANT SELECT ON TABLE candles, technical_indicators, predictions, prediction_outcomes, stream_checkpoints TO cryptopred_grafana;
