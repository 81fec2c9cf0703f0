/*  model_svm.c - kernels and one-vs-one decisions of support vector machines.
 */
#include "model_family.h"

const model_family_op_t model_svm_ops[] = {{NULL, false, NULL, NULL, NULL, NULL}};
