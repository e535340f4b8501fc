pytest_plugins = [
    "tests.plugins.cluster",
    "tests.plugins.operator",
    "tests.plugins.nacos",
    "tests.plugins.java_consumer",
    "tests.plugins.nacos_config_readers",
    "tests.plugins.prometheus",
]
