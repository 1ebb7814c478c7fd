#include "net.h"

#include <cmath>
#include <sstream>

#include "facecluster/error.h"

namespace facecluster {

ModelSpec ModelSpec::from_config(const ModelArgs& m, int64_t feature_dim) {
  ModelSpec s;
  s.in_dim = feature_dim;
  s.d_model = m.d_model;
  s.nhead = m.nhead;
  s.dim_feedforward = m.dim_feedforward;
  s.num_layers = m.num_encoder_layers;
  s.k = m.num_of_feats;
  s.dropout = m.dropout;
  s.activation = m.activation;
  s.normalize_before = m.normalize_before;
  return s;
}

std::string ModelSpec::describe() const {
  std::ostringstream os;
  os << "in_dim " << in_dim << ", d_model " << d_model << ", nhead " << nhead << ", dim_feedforward "
     << dim_feedforward << ", layers " << num_layers << ", k " << k << ", " << activation
     << (normalize_before ? ", pre-norm" : ", post-norm");
  return os.str();
}

namespace model {

torch::Tensor position_code(int k, int d) {
  auto pe = torch::zeros({k, d});
  auto a = pe.accessor<float, 2>();
  for (int p = 0; p < k; ++p)
    for (int i = 0; i < d; i += 2) {
      const double freq = std::pow(10000.0, -static_cast<double>(i) / d);
      a[p][i] = static_cast<float>(std::sin(p * freq));
      if (i + 1 < d) a[p][i + 1] = static_cast<float>(std::cos(p * freq));
    }
  return pe;
}

EncoderLayerImpl::EncoderLayerImpl(const ModelSpec& s)
    : d(s.d_model), heads(s.nhead), dropout(s.dropout), gelu(s.activation == "gelu"), pre_norm(s.normalize_before) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * d, d}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * d}));
  torch::nn::init::xavier_uniform_(in_proj_weight);
  out_proj = register_module("out_proj", torch::nn::Linear(d, d));
  torch::nn::init::zeros_(out_proj->bias);
  linear1 = register_module("linear1", torch::nn::Linear(d, s.dim_feedforward));
  linear2 = register_module("linear2", torch::nn::Linear(s.dim_feedforward, d));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
}

torch::Tensor EncoderLayerImpl::attend(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& pad) {
  namespace F = torch::nn::functional;
  const int64_t b = x.size(0), k = x.size(1), hd = d / heads;
  // Query and key see the position code, the value does not (DETR style).
  auto qk = torch::linear(x + pos, in_proj_weight.slice(0, 0, 2 * d), in_proj_bias.slice(0, 0, 2 * d));
  auto v = torch::linear(x, in_proj_weight.slice(0, 2 * d), in_proj_bias.slice(0, 2 * d));
  auto q = qk.slice(2, 0, d).reshape({b, k, heads, hd}).transpose(1, 2);
  auto kk = qk.slice(2, d).reshape({b, k, heads, hd}).transpose(1, 2);
  v = v.reshape({b, k, heads, hd}).transpose(1, 2);
  auto scores = torch::matmul(q, kk.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  if (pad.defined()) scores = scores.masked_fill(pad.view({b, 1, 1, k}), -std::numeric_limits<float>::infinity());
  auto w = torch::softmax(scores, -1);
  w = F::dropout(w, F::DropoutFuncOptions().p(dropout).training(is_training()));
  auto o = torch::matmul(w, v).transpose(1, 2).reshape({b, k, d});
  return out_proj(o);
}

torch::Tensor EncoderLayerImpl::forward_inference(torch::Tensor x, const torch::Tensor& pos, const torch::Tensor& pad) {
  const int64_t b = x.size(0), k = x.size(1), hd = d / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  auto w = in_proj_weight.clone();
  auto bias = in_proj_bias.clone();
  w.slice(0, 0, d).mul_(scale);
  bias.slice(0, 0, d).mul_(scale);
  const auto pos_qk = torch::matmul(pos.to(w.scalar_type()), w.slice(0, 0, 2 * d).t());  // (k, 2d)
  auto attend_fast = [&](const torch::Tensor& in) {
    auto qkv = torch::linear(in, w, bias);  // (b, k, 3d)
    qkv.slice(2, 0, 2 * d).add_(pos_qk);
    auto q = qkv.slice(2, 0, d).reshape({b, k, heads, hd}).transpose(1, 2);
    auto kk = qkv.slice(2, d, 2 * d).reshape({b, k, heads, hd}).transpose(1, 2);
    auto v = qkv.slice(2, 2 * d).reshape({b, k, heads, hd}).transpose(1, 2);
    auto scores = torch::matmul(q, kk.transpose(-2, -1));
    if (pad.defined()) scores.masked_fill_(pad.view({b, 1, 1, k}), -std::numeric_limits<float>::infinity());
    auto o = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({b, k, d});
    return out_proj(o);
  };
  auto ffn_fast = [&](const torch::Tensor& in) {
    auto h = linear1(in);
    h = gelu ? torch::gelu(h) : h.relu_();
    return linear2(h);
  };
  if (pre_norm) {
    x.add_(attend_fast(norm1(x)));
    return x.add_(ffn_fast(norm2(x)));
  }
  // The residual sums keep the input's type (float under bf16 autocast), as x + attend(x) does.
  const auto a = attend_fast(x);
  auto y = norm1(x.add_(a));
  const auto f = ffn_fast(y);
  return norm2(y.add_(f));
}

torch::Tensor EncoderLayerImpl::feed_forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  auto h = linear1(x);
  h = gelu ? torch::gelu(h) : torch::relu(h);
  h = F::dropout(h, F::DropoutFuncOptions().p(dropout).training(is_training()));
  return linear2(h);
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& pad) {
  namespace F = torch::nn::functional;
  auto drop = [&](const torch::Tensor& t) { return F::dropout(t, F::DropoutFuncOptions().p(dropout).training(is_training())); };
  if (pre_norm) {
    auto y = x + drop(attend(norm1(x), pos, pad));
    return y + drop(feed_forward(norm2(y)));
  }
  auto y = norm1(x + drop(attend(x, pos, pad)));
  return norm2(y + drop(feed_forward(y)));
}

PairNetImpl::PairNetImpl(const ModelSpec& s) : spec(s) {
  FC_CHECK(s.in_dim >= 1 && s.d_model >= 2 && s.nhead >= 1 && s.d_model % s.nhead == 0,
           "model: d_model (" << s.d_model << ") must be a multiple of nhead (" << s.nhead << ")");
  FC_CHECK(s.k >= 2 && s.num_layers >= 1 && s.dim_feedforward >= 1, "model: bad architecture (" << s.describe() << ")");
  FC_CHECK(s.dropout >= 0 && s.dropout < 1, "model: dropout must be in [0, 1), got " << s.dropout);
  FC_CHECK(s.activation == "relu" || s.activation == "gelu", "model: activation must be relu or gelu, got " << quote_input(s.activation));
  if (s.in_dim != s.d_model) input_proj = register_module("input_proj", torch::nn::Linear(s.in_dim, s.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < s.num_layers; ++i) layers->push_back(EncoderLayer(s));
  head1 = register_module("head1", torch::nn::Linear(2 * s.d_model, 256));
  head2 = register_module("head2", torch::nn::Linear(256, 128));
  head3 = register_module("head3", torch::nn::Linear(128, 1));
  pos = register_buffer("pos", position_code(s.k, s.d_model));
}

torch::Tensor PairNetImpl::forward(const torch::Tensor& x, const torch::Tensor& pad) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == spec.k && x.size(2) == spec.in_dim, "PairNet expects (B, ", spec.k, ", ",
              spec.in_dim, ") input, got ", x.sizes());
  const bool inference = !is_training() && !torch::GradMode::is_enabled();
  auto h = input_proj ? input_proj(x) : x;
  if (inference) {
    if (!input_proj) h = h.clone();  // the inference path works in place
    for (const auto& layer : *layers) h = layer->as<EncoderLayer>()->forward_inference(h, pos, pad);
  } else {
    const auto p = pos.to(h.dtype());
    for (const auto& layer : *layers) h = layer->as<EncoderLayer>()->forward(h, p, pad);
  }
  // Linear over [h_0, h_j] == W_a h_0 + W_b h_j + b: the anchor half is computed once per row.
  const int64_t d = spec.d_model;
  auto wa = head1->weight.slice(1, 0, d), wb = head1->weight.slice(1, d);
  auto anchor = torch::linear(h.select(1, 0), wa, head1->bias).unsqueeze(1);
  auto z = torch::linear(h, wb).add_(anchor).relu_();
  z = head2(z).relu_();
  return head3(z).squeeze(-1);
}

}  // namespace model
}  // namespace facecluster
