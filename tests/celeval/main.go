// celeval evaluates CEL expressions over one Kubernetes object the way Flux's
// kustomize-controller evaluates healthCheckExprs: the object's top-level fields are the
// variables, optional types are on. Input on stdin: {"object": {...}, "expressions":
// {"name": "expr"}}. Output: {"name": true|false|"error: ..."}.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
)

var fields = []string{"apiVersion", "kind", "metadata", "spec", "status"}

func main() {
	var input struct {
		Object      map[string]any    `json:"object"`
		Expressions map[string]string `json:"expressions"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fail(err)
	}
	options := []cel.EnvOption{cel.OptionalTypes(), ext.Strings(), ext.Lists(), ext.Sets()}
	for _, name := range fields {
		options = append(options, cel.Variable(name, cel.DynType))
	}
	env, err := cel.NewEnv(options...)
	if err != nil {
		fail(err)
	}
	activation := map[string]any{}
	for _, name := range fields {
		if value, ok := input.Object[name]; ok {
			activation[name] = value
		}
	}
	out := map[string]any{}
	for name, expression := range input.Expressions {
		out[name] = evaluate(env, expression, activation)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func evaluate(env *cel.Env, expression string, activation map[string]any) any {
	ast, issues := env.Compile(expression)
	if issues != nil && issues.Err() != nil {
		return "error: " + issues.Err().Error()
	}
	program, err := env.Program(ast)
	if err != nil {
		return "error: " + err.Error()
	}
	value, _, err := program.Eval(activation)
	if err != nil {
		return "error: " + err.Error()
	}
	result, ok := value.Value().(bool)
	if !ok {
		return fmt.Sprintf("error: not a bool: %v", value)
	}
	return result
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
