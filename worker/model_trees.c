/*  model_trees.c - decision trees and their ensembles (docs/MODEL_FORMAT.md, "trees").
 */
#include "model_family.h"

const model_family_op_t model_trees_ops[] = {{NULL, false, NULL, NULL, NULL, NULL}};
