#include "facecluster/config.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <fstream>
#include <filesystem>

#include "facecluster/error.h"

namespace facecluster {
namespace {

enum class Type { Int, Int64, Double, Bool, String, StringList };

struct Field {
  Type type;
  std::function<void*(Config&)> ptr;
};

const char* type_name(Type t) {
  switch (t) {
    case Type::Int:
    case Type::Int64: return "an integer";
    case Type::Double: return "a number";
    case Type::Bool: return "a boolean (True/False)";
    case Type::String: return "a string";
    case Type::StringList: return "a list of strings";
  }
  return "?";
}

#define FIELD(key, type, member) \
  { key, Field{Type::type, [](Config& c) -> void* { return &c.member; }} }

void add_dataset_fields(std::map<std::string, Field>& t, const std::string& block, DatasetArgs Config::*m) {
  auto f = [&](const char* key, Type type, std::function<void*(DatasetArgs&)> get) {
    t[block + "." + key] = Field{type, [m, get](Config& c) -> void* { return get(c.*m); }};
  };
  f("feature_path", Type::String, [](DatasetArgs& d) -> void* { return &d.feature_path; });
  f("label_path", Type::String, [](DatasetArgs& d) -> void* { return &d.label_path; });
  f("knn_path", Type::String, [](DatasetArgs& d) -> void* { return &d.knn_path; });
  f("feature_dim", Type::Int64, [](DatasetArgs& d) -> void* { return &d.feature_dim; });
  f("topk", Type::Int, [](DatasetArgs& d) -> void* { return &d.topk; });
  f("model_topk", Type::Int, [](DatasetArgs& d) -> void* { return &d.model_topk; });
  f("is_norm_feat", Type::Bool, [](DatasetArgs& d) -> void* { return &d.is_norm_feat; });
  f("prefix", Type::String, [](DatasetArgs& d) -> void* { return &d.prefix; });
  f("is_reload", Type::Bool, [](DatasetArgs& d) -> void* { return &d.is_reload; });
  f("is_train", Type::Bool, [](DatasetArgs& d) -> void* { return &d.is_train; });
  f("knn_index", Type::String, [](DatasetArgs& d) -> void* { return &d.knn_index; });
}

const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> table = [] {
    std::map<std::string, Field> t = {
        FIELD("seed", Int, seed),
        FIELD("workers", Int, workers),
        FIELD("work_dir", String, work_dir),
        FIELD("debug", Bool, debug),
        FIELD("print_interval", Int, print_interval),
        FIELD("save_interval", Int, save_interval),
        FIELD("inference_interval", Int, inference_interval),
        FIELD("batch_size", Int, batch_size),
        FIELD("test_batch_size", Int, test_batch_size),
        FIELD("dataset_name", String, dataset_name),
        FIELD("test_dataset_name", String, test_dataset_name),
        FIELD("start_epoch", Int, start_epoch),
        FIELD("epochs", Int, epochs),
        FIELD("reload", Bool, reload),
        FIELD("learning_rate", Double, learning_rate),
        FIELD("weight_decay", Double, weight_decay),
        FIELD("clip_max_norm", Double, clip_max_norm),
        FIELD("model_name", String, model_name),
        FIELD("model_args.d_model", Int, model_args.d_model),
        FIELD("model_args.nhead", Int, model_args.nhead),
        FIELD("model_args.dim_feedforward", Int, model_args.dim_feedforward),
        FIELD("model_args.dropout", Double, model_args.dropout),
        FIELD("model_args.activation", String, model_args.activation),
        FIELD("model_args.normalize_before", Bool, model_args.normalize_before),
        FIELD("model_args.num_encoder_layers", Int, model_args.num_encoder_layers),
        FIELD("model_args.num_of_feats", Int, model_args.num_of_feats),
        FIELD("loss_list", StringList, loss_list),
        FIELD("loss_args.verbose", Bool, loss_verbose),
        FIELD("lambdas.pair", Double, lambda_pair),
        FIELD("density_args.density_type", String, density_args.density_type),
        FIELD("density_args.TPDi", Bool, density_args.tpdi),
        FIELD("density_args.ndde_k", Int, density_args.ndde_k),
        FIELD("density_args.ndde_sigma", Double, density_args.ndde_sigma),
        FIELD("density_args.ndde_d", Double, density_args.ndde_d),
        FIELD("density_args.ndde_epsilon", Double, density_args.ndde_epsilon),
        FIELD("density_args.ndde_max_iter", Int, density_args.ndde_max_iter),
        FIELD("density_args.tpdi_sigma", Double, density_args.tpdi_sigma),
        FIELD("cluster_args.max_conn", Int, cluster_args.max_conn),
        FIELD("cluster_args.tau_start", Double, cluster_args.tau_start),
        FIELD("cluster_args.tau_end", Double, cluster_args.tau_end),
        FIELD("cluster_args.tau_step", Int, cluster_args.tau_step),
        FIELD("cluster_args.select_by", String, cluster_args.select_by),
        FIELD("cluster_args.compute_time", Bool, cluster_args.compute_time),
        FIELD("cluster_args.compute_size", Bool, cluster_args.compute_size),
        FIELD("cluster_args.compute_sim", Bool, cluster_args.compute_sim),
        FIELD("cluster_args.calibrate", String, cluster_args.calibrate),
        FIELD("train_knn_path", String, train_knn_path),
        FIELD("test_knn_path", String, test_knn_path),
        FIELD("mode", String, mode),
        FIELD("recompute_dist", Bool, recompute_dist),
        FIELD("prefix", String, prefix),
        FIELD("eval_epoch", Int, eval_epoch),
        FIELD("threads", Int, threads),
        FIELD("device", String, device),
        FIELD("augment_rotation", Bool, augment_rotation),
        FIELD("precision", String, precision),
    };
    add_dataset_fields(t, "dataset_args", &Config::dataset_args);
    add_dataset_fields(t, "test_dataset_args", &Config::test_dataset_args);
    return t;
  }();
  return table;
}

bool is_block(const std::string& key) {
  const std::string prefix = key + ".";
  const auto& t = fields();
  auto it = t.lower_bound(prefix);
  return it != t.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

bool parse_bool(std::string v, bool* out) {
  for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (v == "true" || v == "yes" || v == "on" || v == "1") return *out = true, true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return *out = false, true;
  return false;
}

void assign_scalar(Config& c, const std::string& key, const Field& f, const std::string& v, const std::string& source) {
  auto bad = [&]() { FC_FAIL(source << ": key " << quote_input(key) << " must be " << type_name(f.type) << ", got " << quote_input(v)); };
  void* p = f.ptr(c);
  switch (f.type) {
    case Type::Int:
    case Type::Int64: {
      char* end = nullptr;
      errno = 0;
      long long x = std::strtoll(v.c_str(), &end, 10);
      const bool overflow = errno == ERANGE;
      if (v.empty() || *end != '\0') {
        double d = std::strtod(v.c_str(), &end);  // 1e3 style integers
        if (v.empty() || *end != '\0' || !std::isfinite(d) || d != std::floor(d)) bad();
        if (std::fabs(d) > 9.0e18) x = d > 0 ? LLONG_MAX : LLONG_MIN;
        else x = static_cast<long long>(d);
      } else if (overflow) {
        x = LLONG_MAX;
      }
      const long long lo = f.type == Type::Int ? INT_MIN : LLONG_MIN, hi = f.type == Type::Int ? INT_MAX : LLONG_MAX;
      FC_CHECK(x > lo && x < hi, source << ": key " << quote_input(key) << " is out of range: " << quote_input(v)
                                        << " (integers up to " << (f.type == Type::Int ? "2^31" : "2^63") << ")");
      if (f.type == Type::Int) *static_cast<int*>(p) = static_cast<int>(x);
      else *static_cast<int64_t*>(p) = x;
      break;
    }
    case Type::Double: {
      char* end = nullptr;
      double x = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || std::isnan(x)) bad();
      *static_cast<double*>(p) = x;
      break;
    }
    case Type::Bool:
      if (!parse_bool(v, static_cast<bool*>(p))) bad();
      break;
    case Type::String: *static_cast<std::string*>(p) = v; break;
    case Type::StringList: {
      auto* list = static_cast<std::vector<std::string>*>(p);
      list->clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) list->push_back(item);
      break;
    }
  }
}

void walk(Config& c, const YAML::Node& node, const std::string& prefix, const std::string& source) {
  std::set<std::string> seen;
  for (const auto& kv : node) {
    FC_CHECK(kv.first.IsScalar(), source << ": line " << kv.first.Mark().line + 1 << ": a key must be a plain name");
    const std::string name = kv.first.as<std::string>();
    FC_CHECK(seen.insert(name).second, source << ": key " << quote_input(prefix.empty() ? name : prefix + "." + name)
                                              << " is given twice (line " << kv.first.Mark().line + 1 << ")");
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& v = kv.second;
    const auto& t = fields();
    auto it = t.find(key);
    if (it == t.end()) {
      FC_CHECK(is_block(key), source << ": unknown key " << quote_input(key));
      if (v.IsNull()) continue;
      FC_CHECK(v.IsMap(), source << ": key " << quote_input(key) << " must be a block of keys");
      walk(c, v, key, source);
      continue;
    }
    if (v.IsNull()) continue;  // "key:" with no value keeps the default
    c.keys_set.insert(key);
    if (it->second.type == Type::StringList) {
      FC_CHECK(v.IsSequence() || v.IsScalar(), source << ": key " << quote_input(key) << " must be " << type_name(it->second.type));
      auto* list = static_cast<std::vector<std::string>*>(it->second.ptr(c));
      list->clear();
      if (v.IsScalar()) list->push_back(v.Scalar());
      for (const auto& item : v) {
        FC_CHECK(item.IsScalar(), source << ": key " << quote_input(key) << " must be " << type_name(it->second.type));
        list->push_back(item.Scalar());
      }
      continue;
    }
    FC_CHECK(v.IsScalar(), source << ": key " << quote_input(key) << " must be " << type_name(it->second.type) << ", got a "
                                  << (v.IsMap() ? "block" : "list"));
    assign_scalar(c, key, it->second, v.Scalar(), source);
  }
}

std::string value_string(Config& c, const std::string& key, const Field& f) {
  void* p = f.ptr(c);
  std::ostringstream out;
  switch (f.type) {
    case Type::Int: out << *static_cast<int*>(p); break;
    case Type::Int64: out << *static_cast<int64_t*>(p); break;
    case Type::Double: out << *static_cast<double*>(p); break;
    case Type::Bool: out << (*static_cast<bool*>(p) ? "True" : "False"); break;
    case Type::String: out << *static_cast<std::string*>(p); break;
    case Type::StringList: {
      auto* l = static_cast<std::vector<std::string>*>(p);
      out << "[";
      for (size_t i = 0; i < l->size(); ++i) out << (i ? ", " : "") << (*l)[i];
      out << "]";
      break;
    }
  }
  (void)key;
  return out.str();
}

}  // namespace

Config parse_config(const std::string& text, const std::string& source) {
  Config c;
  c.source = source;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    FC_FAIL(source << ": YAML nested deeper than the parser allows (depth " << e.depth() << ") at line "
                   << e.mark.line + 1 << "; no facecluster key needs more than two levels");
  } catch (const YAML::Exception& e) {
    FC_FAIL(source << ": malformed YAML at line " << e.mark.line + 1 << ": " << e.msg);
  }
  if (root.IsNull()) return c;
  FC_CHECK(root.IsMap(), source << ": expected a mapping of keys at the top level");
  try {
    walk(c, root, "", source);
  } catch (const YAML::Exception& e) {
    FC_FAIL(source << ": malformed YAML at line " << e.mark.line + 1 << ": " << quote_input(e.msg));
  }
  return c;
}

Config load_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  FC_CHECK(fs::exists(path, ec), "config " << path << " does not exist");
  FC_CHECK(fs::is_regular_file(path, ec), "config " << path << " is not a file");
  std::ifstream in(path, std::ios::binary);
  FC_CHECK(in, "cannot open config " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

void set_config_value(Config& c, const std::string& key, const std::string& value) {
  const auto& t = fields();
  auto it = t.find(key);
  FC_CHECK(it != t.end(), "unknown config key " << quote_input(key));
  assign_scalar(c, key, it->second, value, "--set " + key);
  c.keys_set.insert(key);
}

void apply_config_sets(Config& c, const std::vector<std::string>& sets) {
  for (const auto& s : sets) {
    const size_t eq = s.find('=');
    FC_CHECK(eq != std::string::npos, "--set needs KEY=VALUE, got " << quote_input(s));
    set_config_value(c, s.substr(0, eq), s.substr(eq + 1));
  }
}

void require_keys(const Config& c, const std::vector<std::string>& keys, const std::string& job) {
  Config copy = c;
  for (const auto& key : keys) {
    auto it = fields().find(key);
    FC_CHECK(it != fields().end(), "internal: unknown required key " << key);
    FC_CHECK(!value_string(copy, key, it->second).empty(),
             (c.source.empty() ? std::string("config") : c.source) << ": " << job << " needs key " << quote_input(key));
  }
}

std::string config_to_yaml(const Config& c) {
  Config copy = c;
  std::ostringstream out;
  std::string block;
  for (const auto& [key, f] : fields()) {
    const size_t dot = key.find('.');
    const std::string b = dot == std::string::npos ? "" : key.substr(0, dot);
    if (b != block) {
      block = b;
      if (!b.empty()) out << b << ":\n";
    }
    const std::string name = dot == std::string::npos ? key : key.substr(dot + 1);
    std::string v = value_string(copy, key, f);
    if (f.type == Type::String) v = "'" + v + "'";
    out << (b.empty() ? "" : "  ") << name << ": " << v << "\n";
  }
  return out.str();
}

}  // namespace facecluster
