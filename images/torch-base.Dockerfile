# syntax=docker/dockerfile:1
# A local stand-in for the trainer's CUDA PyTorch base where no registry can be reached: the local Python base
# (Debian's python3 in a venv) with the CPU build of the torch the project pins. `images/build.py` builds it.
ARG BASE_IMAGE=localhost/sweetspot-base-python:3.11-bookworm
FROM ${BASE_IMAGE}
ARG WHEELS=images/wheelhouse
ARG TORCH=torch
RUN --mount=type=bind,source=${WHEELS},target=/wheels \
    PIP_NO_CACHE_DIR=1 pip install --no-index --find-links /wheels "${TORCH}"
