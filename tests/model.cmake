# Unit test of the model loader and runtime (worker/model.c, worker/model_run.c).
# Included from tests/CMakeLists.txt; needs the target amaas_model and Check.
if(NOT TARGET PkgConfig::CHECK)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(CHECK REQUIRED IMPORTED_TARGET check)
endif()
add_executable(test_model test_model.c)
target_link_libraries(test_model PRIVATE amaas_model PkgConfig::CHECK m)
add_test(NAME unit_model COMMAND test_model)
# the test writes one temporary model file; keep it in the build tree
set_tests_properties(unit_model PROPERTIES ENVIRONMENT "TMPDIR=${CMAKE_CURRENT_BINARY_DIR}"
                     TIMEOUT 600)
# Unit test of the svm family (worker/model_svm.c)
add_executable(test_model_svm test_model_svm.c)
target_link_libraries(test_model_svm PRIVATE amaas_model PkgConfig::CHECK m)
add_test(NAME unit_model_svm COMMAND test_model_svm)
set_tests_properties(unit_model_svm PROPERTIES TIMEOUT 120)
# Unit test of the vectorized exp (worker/vmath.c)
add_executable(test_vmath test_vmath.c)
target_link_libraries(test_vmath PRIVATE amaas_model PkgConfig::CHECK m)
add_test(NAME unit_vmath COMMAND test_vmath)
set_tests_properties(unit_vmath PROPERTIES TIMEOUT 120)

# Unit test of the trees family (worker/model_trees.c): refusals, hand-computed results
add_executable(test_model_trees test_model_trees.c)
target_link_libraries(test_model_trees PRIVATE amaas_model PkgConfig::CHECK m)
add_test(NAME unit_model_trees COMMAND test_model_trees)
set_tests_properties(unit_model_trees PROPERTIES TIMEOUT 120)

# Unit test of graph models (worker/graph.c, graph_plan.c, graph_ops.c):
# graphs packed from JSON, results against plain loops, refusals
add_executable(test_graph test_graph.c)
target_link_libraries(test_graph PRIVATE amaas_model PkgConfig::CHECK PkgConfig::JANSSON m)
target_compile_definitions(test_graph PRIVATE T_CORPUS="${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/model")
add_test(NAME unit_graph COMMAND test_graph)
set_tests_properties(unit_graph PROPERTIES TIMEOUT 120)
