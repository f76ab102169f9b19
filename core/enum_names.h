// Enumerations with the names users write (recipe values, checkpoint attributes): one table
// per enum, next to its definition, parsed and printed through these templates only.
//
//   enum class Precision { Auto, F32, BF16 };
//   template <> struct EnumNames<Precision> {
//     static constexpr std::string_view noun = "precision";
//     static constexpr std::array<std::string_view, 3> names = {"auto", "f32", "bf16"};
//   };
// The names are in the order of the enumerators, which count from 0.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace rt {

template <class E>
struct EnumNames;

template <class E>
std::string_view name_of(E value) {
  return EnumNames<E>::names[static_cast<size_t>(value)];
}

template <class E>
std::optional<E> enum_from_name(std::string_view name) {
  for (size_t i = 0; i < EnumNames<E>::names.size(); ++i)
    if (EnumNames<E>::names[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

}  // namespace rt
