# The image of every Airflow service in docker-compose.yaml (and of the CRM sandbox): the official
# Airflow image, this project's requirements, and the project itself installed so Airflow finds the
# CRM connection types (the apache_airflow_provider entry point in pyproject.toml).
#
#   docker compose build            (docker-compose.yaml tags it ${AIRFLOW_IMAGE_NAME})
#
# Upgrading Airflow: change AIRFLOW_VERSION here and apache-airflow== in requirements.txt together
# (tests/test_deployment_config.py checks they agree), then see README "Deployment", Upgrading.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

# Requirements first, so editing the project's code does not reinstall them. Airflow is named again
# so pip can never move it (https://airflow.apache.org/docs/docker-stack/build.html).
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt

# The project in AIRFLOW_HOME (/opt/airflow), laid out as in the repository: dags/, plugins/ and
# include/ are where Airflow and the code look for them, and docker-compose.yaml mounts the
# working tree's copies over these. The editable install maps the packages to these paths, so
# crm_sync.db finds include/sql next to plugins/ and mounted code is the code that runs.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 crm_sandbox/ /opt/airflow/crm_sandbox/
COPY --chown=airflow:0 localdev/ /opt/airflow/localdev/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && mkdir -p /home/airflow/sandbox

# (/home/airflow/sandbox: the CRM sandbox's state volume, owned by the airflow user.)
ENV CRM_SYNC_SQL_DIR=/opt/airflow/include/sql
