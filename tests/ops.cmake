# Operations tests: scripts/amaas-cluster (start, status, scale, stop, a
# rolling restart under load) and many machines proven with network
# namespaces (skipped unless root with iproute2).
# Included from tests/CMakeLists.txt after amaas_python_test is defined and
# chaos_client is built.
amaas_python_test(integration_ops integration/test_ops.py 300)
amaas_python_test(integration_netns integration/test_netns.py 300)
