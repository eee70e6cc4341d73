# icbridge image: the official Airflow image extended with our pinned requirements and the icbridge
# package, as https://airflow.apache.org/docs/docker-stack/build.html recommends ("Adding packages from
# requirements.txt"): pip runs as the airflow user, never as root, and apache-airflow is pinned to the
# image's own version so that no requirement can up- or downgrade Airflow.
#
# Built by docker-compose.yaml (`build: .`, tag icbridge-airflow:${ICBRIDGE_VERSION:-latest}).
# No Docker engine runs on the development machines: tests/test_compose.py and review check this file.
# No secret goes into the image: .env is excluded by .dockerignore, connections come at run time.
FROM apache/airflow:3.3.2-python3.11

USER airflow

# A build directory owned by the airflow user (pip builds the project in place).
RUN mkdir -p /tmp/icbridge-build/constraints
WORKDIR /tmp/icbridge-build

# Third-party requirements first, so this layer is cached while only our code changes.
COPY --chown=airflow:0 requirements.txt ./requirements.txt
COPY --chown=airflow:0 constraints/constraints-3.11.txt ./constraints/constraints-3.11.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r requirements.txt -c constraints/constraints-3.11.txt

# The icbridge package itself (its dependencies are all in requirements.txt, hence --no-deps).
COPY --chown=airflow:0 pyproject.toml ./pyproject.toml
COPY --chown=airflow:0 include/ ./include/
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import icbridge" \
    && rm -rf /tmp/icbridge-build

WORKDIR /opt/airflow

# include/ (biller YAML in include/billers) is also in the image at the path compose mounts it on, so
# the image works without the mount. The simulators (include/icbsim) are not in the installed package:
# `python -m icbsim` imports them from there, with PYTHONPATH=/opt/airflow/include (docker-compose.yaml).
# The simulator's state directory is group-0 writable so that a named volume initialised from it
# works for any AIRFLOW_UID (the image runs everything with GID 0).
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN mkdir -p /opt/airflow/sim-state && chmod 0775 /opt/airflow/sim-state
