"""flask-smorest's Blueprint, reading bodies with our strict JSON reader."""

from flask_smorest import Blueprint as SmorestBlueprint

from service.http.body import JsonObjectParser


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = JsonObjectParser()
