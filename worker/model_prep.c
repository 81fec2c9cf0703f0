/*  model_prep.c - preprocessing ops (imputation, scalers, norms, polynomial features, one-hot).
 */
#include "model_family.h"

const model_family_op_t model_prep_ops[] = {{NULL, false, NULL, NULL, NULL, NULL}};
