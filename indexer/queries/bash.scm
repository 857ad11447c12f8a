(function_definition name: (word) @name) @def.function
