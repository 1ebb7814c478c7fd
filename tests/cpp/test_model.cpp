// The learned similarity: architecture against libtorch's own attention, masking, batch
// independence, gradients, learning a toy task, exact resume, checkpoint refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "../../src/model/batch.h"
#include "../../src/model/net.h"
#include "../../src/model/runtime.h"
#include "facecluster/config.h"
#include "facecluster/error.h"
#include "facecluster/log.h"
#include "facecluster/model.h"
#include "helpers.h"

using namespace facecluster;

namespace {

ModelSpec tiny_spec(int64_t in_dim = 8, int k = 6) {
  ModelSpec s;
  s.in_dim = in_dim;
  s.d_model = 8;
  s.nhead = 2;
  s.dim_feedforward = 16;
  s.k = k;
  s.dropout = 0.0;
  return s;
}

// Two well-separated identities with noise: rows 2i and 2i+1 alternate identities, each row's
// kNN list holds its identity's members first, then the other identity's.
struct Toy {
  Matrix x;
  Labels labels;
  KnnGraph g;
};

Toy make_toy(int64_t n, int dim, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.35f);
  Toy t;
  t.x = Matrix(n, dim);
  t.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int id = static_cast<int>(i % 2);
    t.labels[static_cast<size_t>(i)] = id;
    float norm = 0;
    for (int c = 0; c < dim; ++c) {
      float v = (c == id ? 1.f : 0.f) + noise(rng);
      t.x.row(i)[c] = v;
      norm += v * v;
    }
    for (int c = 0; c < dim; ++c) t.x.row(i)[c] /= std::sqrt(norm);
  }
  // Exact cosine kNN by brute force.
  t.g = KnnGraph(n, k);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::pair<float, int32_t>> d;
    for (int64_t j = 0; j < n; ++j) {
      float dot = 0;
      for (int c = 0; c < dim; ++c) dot += t.x.row(i)[c] * t.x.row(j)[c];
      d.emplace_back(j == i ? -1.f : 1.f - dot, static_cast<int32_t>(j));
    }
    std::partial_sort(d.begin(), d.begin() + k, d.end());
    for (int j = 0; j < k; ++j) {
      t.g.nbr_row(i)[j] = d[j].second;
      t.g.dist_row(i)[j] = std::max(0.f, d[j].first);
    }
  }
  return t;
}

Config tiny_config(const std::string& work_dir, int epochs) {
  Config c;
  c.work_dir = work_dir;
  c.epochs = epochs;
  c.batch_size = 16;
  c.test_batch_size = 32;
  c.learning_rate = 3e-3;
  c.weight_decay = 0;
  c.print_interval = 1000;
  c.seed = 7;
  c.threads = 1;
  return c;
}

std::vector<torch::Tensor> weights(const std::string& path) {
  auto m = PairModel::load(path);
  std::vector<torch::Tensor> out;
  for (const auto& p : m.impl()->net->parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST(Model, ReleaseShapesAndParameterCount) {
  ModelSpec s;  // defaults: D 256 = d_model, k 80
  auto m = PairModel::create(s, 1);
  EXPECT_EQ(m.parameter_count(), 1479425);  // SPEC: ~1.48 M; no input projection when D == d_model
  auto x = torch::randn({3, 80, 256});
  EXPECT_EQ(m.impl()->net->forward(x).sizes(), (std::vector<int64_t>{3, 80}));
  ModelSpec p = s;
  p.in_dim = 128;  // 128-d embeddings: a learned projection 128 -> 256 first
  auto mp = PairModel::create(p, 1);
  EXPECT_EQ(mp.parameter_count(), 1479425 + 128 * 256 + 256);
  EXPECT_EQ(mp.impl()->net->forward(torch::randn({2, 80, 128})).sizes(), (std::vector<int64_t>{2, 80}));
}

TEST(Model, PositionCodeIsSineCosineOfRank) {
  auto pe = model::position_code(5, 6);
  for (int p = 0; p < 5; ++p)
    for (int i = 0; i < 6; i += 2) {
      const double f = std::pow(10000.0, -i / 6.0);
      EXPECT_NEAR(pe[p][i].item<float>(), std::sin(p * f), 1e-6);
      EXPECT_NEAR(pe[p][i + 1].item<float>(), std::cos(p * f), 1e-6);
    }
}

// The encoder layer equals libtorch's MultiheadAttention (query = key = x + pos, value = x)
// followed by the post-norm residual blocks, computed here from the layer's own weights.
TEST(Model, EncoderLayerMatchesLibtorchAttention) {
  ModelSpec s = tiny_spec();
  torch::manual_seed(3);
  model::EncoderLayer layer(s);
  layer->eval();
  torch::nn::MultiheadAttention mha(torch::nn::MultiheadAttentionOptions(s.d_model, s.nhead));
  mha->eval();
  {
    torch::NoGradGuard ng;
    mha->in_proj_weight.copy_(layer->in_proj_weight);
    mha->in_proj_bias.copy_(layer->in_proj_bias);
    mha->out_proj->weight.copy_(layer->out_proj->weight);
    mha->out_proj->bias.copy_(layer->out_proj->bias);
  }
  auto x = torch::randn({4, s.k, s.d_model});
  auto pos = model::position_code(s.k, s.d_model);
  auto pad = torch::zeros({4, s.k}, torch::kBool);
  pad[1][5] = true;
  pad[2][4] = true;
  pad[2][5] = true;
  auto ours = layer->forward(x, pos, pad);
  // Reference: sequence-first attention per the libtorch module, then the same residual blocks.
  auto qk = (x + pos).transpose(0, 1), v = x.transpose(0, 1);
  auto attn = std::get<0>(mha->forward(qk, qk, v, pad)).transpose(0, 1);
  auto y = layer->norm1(x + attn);
  auto ref = layer->norm2(y + layer->linear2(torch::relu(layer->linear1(y))));
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-5, 1e-5)) << (ours - ref).abs().max().item<float>();
}

TEST(Model, PaddedNeighboursAndOtherAnchorsDoNotChangeAnAnchorsOutput) {
  ModelSpec s = tiny_spec();
  auto m = PairModel::create(s, 2);
  auto& net = m.impl()->net;
  net->eval();
  auto x = torch::randn({3, s.k, s.in_dim});
  auto pad = torch::zeros({3, s.k}, torch::kBool);
  pad[0][4] = true;
  pad[0][5] = true;
  auto base = net->forward(x, pad);
  auto x2 = x.clone();
  x2[0][4] = torch::randn({s.in_dim}) * 5;  // padded slot of anchor 0
  x2[2] = torch::randn({s.k, s.in_dim});    // a different anchor in the same batch
  auto changed = net->forward(x2, pad);
  EXPECT_TRUE(torch::allclose(base[0].slice(0, 0, 4), changed[0].slice(0, 0, 4), 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(base[1], changed[1]) || torch::allclose(base[1], changed[1], 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(base[2], changed[2], 1e-3, 1e-3));
  // One anchor alone gives what it gives inside a batch: attention stays within its list.
  auto alone = net->forward(x.slice(0, 1, 2), pad.slice(0, 1, 2));
  EXPECT_TRUE(torch::allclose(alone[0], base[1], 1e-5, 1e-5));
}

// Inference (eval mode, no autograd) takes the layers' fused path; it must compute the training
// graph's function: post- and pre-norm, relu and gelu, with and without the input projection,
// padded slots, more than one layer; and leave its input as it was.
TEST(Model, InferencePathEqualsTheTrainingGraph) {
  for (int variant = 0; variant < 4; ++variant) {
    ModelSpec s = tiny_spec(variant == 1 ? 5 : 8, 6);
    s.normalize_before = variant == 2;
    s.activation = variant == 3 ? "gelu" : "relu";
    s.num_layers = variant == 2 ? 2 : 1;
    s.dropout = 0.2;  // eval mode: no dropout on either path
    auto m = PairModel::create(s, 3 + variant);
    auto& net = m.impl()->net;
    net->eval();
    auto x = torch::randn({4, s.k, s.in_dim});
    auto pad = torch::zeros({4, s.k}, torch::kBool);
    pad[1][5] = true;
    const auto x_before = x.clone();
    const auto graph = net->forward(x, pad).detach();  // autograd on: the training graph
    torch::Tensor fused;
    {
      torch::NoGradGuard no_grad;
      fused = net->forward(x, pad);
    }
    EXPECT_LT((graph - fused).abs().max().item<double>(), 1e-5) << "variant " << variant;
    EXPECT_TRUE(torch::equal(x, x_before)) << "variant " << variant;
  }
}

TEST(Model, GradientsMatchFiniteDifferences) {
  ModelSpec s = tiny_spec(5, 4);
  s.in_dim = 5;  // with the input projection
  auto m = PairModel::create(s, 4);
  auto& net = m.impl()->net;
  net->to(torch::kFloat64);
  net->eval();
  auto x = torch::randn({2, s.k, s.in_dim}, torch::kFloat64);
  auto target = torch::tensor({1., 0., 1., 0., 1., 1., 0., 0.}, torch::kFloat64).view({2, s.k});
  auto loss_of = [&] {
    return torch::nn::functional::binary_cross_entropy_with_logits(net->forward(x), target);
  };
  net->zero_grad();
  loss_of().backward();
  int checked = 0;
  for (auto& p : net->parameters()) {
    auto flat = p.data().view(-1);
    auto grad = p.grad().view(-1);
    for (int64_t idx : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double h = 1e-6, orig = flat[idx].item<double>();
      torch::NoGradGuard ng;
      flat[idx] = orig + h;
      const double up = loss_of().item<double>();
      flat[idx] = orig - h;
      const double down = loss_of().item<double>();
      flat[idx] = orig;
      const double numeric = (up - down) / (2 * h), analytic = grad[idx].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::abs(numeric)) << "parameter element " << idx;
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

TEST(Model, AnchorComesFirstInItsInput) {
  KnnGraph g(4, 4);
  const int32_t rows[4][4] = {{0, 1, 2, 3}, {0, 1, 2, 3}, {0, 3, -1, -1}, {0, 1, 2, -1}};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) g.nbr_row(i)[j] = rows[i][j];
  int32_t out[4];
  model::anchor_first_row(g, 0, 4, out);
  EXPECT_EQ(std::vector<int32_t>(out, out + 4), (std::vector<int32_t>{0, 1, 2, 3}));
  model::anchor_first_row(g, 1, 4, out);  // behind a twin: moved to the front
  EXPECT_EQ(std::vector<int32_t>(out, out + 4), (std::vector<int32_t>{1, 0, 2, 3}));
  model::anchor_first_row(g, 2, 4, out);  // absent: inserted, padding kept at the end
  EXPECT_EQ(std::vector<int32_t>(out, out + 4), (std::vector<int32_t>{2, 0, 3, -1}));
  model::anchor_first_row(g, 3, 3, out);  // absent and the row is full: the last one drops
  EXPECT_EQ(std::vector<int32_t>(out, out + 3), (std::vector<int32_t>{3, 0, 1}));
}

TEST(Model, LearnsTwoIdentitiesAndTheLearnedGraphIsSorted) {
  set_log_level(0);
  fctest::TempDir dir;
  Toy train = make_toy(240, 8, 6, 11), test = make_toy(120, 8, 6, 12);
  // Pairs across identities exist in the lists (k 6 of 120 per identity would not reach them),
  // so mix: every second neighbour slot points to the other identity.
  for (Toy* t : {&train, &test})
    for (int64_t i = 0; i < t->g.n; ++i)
      for (int j = 3; j < 6; ++j) t->g.nbr_row(i)[j] = static_cast<int32_t>((i + 2 * j + 1) % t->g.n);
  const ModelSpec s = tiny_spec();
  Config cfg = tiny_config(dir.file("work"), 30);
  TrainSplit tr{&train.x, &train.g, &train.labels}, te{&test.x, &test.g, &test.labels};
  cfg.inference_interval = 10;
  const auto logs = train_model(cfg, s, tr, &te);
  ASSERT_EQ(logs.size(), 30u);
  EXPECT_LT(logs.back().train.loss, 0.5 * logs.front().train.loss);
  EXPECT_TRUE(logs[9].validated && logs[29].validated);
  EXPECT_FALSE(logs[10].validated);
  EXPECT_EQ(logs[29].validation.pairs, test.g.n * 6);
  auto m = PairModel::load(checkpoint_path(cfg.work_dir, 30), &s);
  InferenceOptions o;
  o.batch_size = 7;  // batches that do not divide N
  const PairStats st = evaluate_pairs(m, test.x, test.g, test.labels, o);
  EXPECT_GE(st.accuracy, 0.97) << "loss " << st.loss;
  const KnnGraph lg = learned_graph(m, test.x, test.g, o);
  for (int64_t i = 0; i < lg.n; ++i) {
    std::vector<int32_t> want(6), got(lg.nbr_row(i), lg.nbr_row(i) + 6);
    model::anchor_first_row(test.g, i, 6, want.data());
    for (int j = 1; j < 6; ++j) EXPECT_LE(lg.dist_row(i)[j - 1], lg.dist_row(i)[j]);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(want, got);
  }
  // Same identity first: for row 0 the learned order puts identity-0 rows ahead of identity-1 rows.
  for (int j = 0; j + 1 < 6; ++j)
    EXPECT_FALSE(test.labels[lg.nbr_row(0)[j]] != 0 && test.labels[lg.nbr_row(0)[j + 1]] == 0);
  // bf16 on the CPU runs each batch in blocks of 32 anchors (here 100 = 32 + 32 + 32 + 4): every
  // row must keep its own neighbours, and fp32's distances and those of one anchor at a time to
  // bf16 rounding.
  if (model::bf16_is_fast()) {
    InferenceOptions b16 = o;
    b16.precision = Precision::Bf16;
    b16.batch_size = 100;
    const KnnGraph lb = learned_graph(m, test.x, test.g, b16);
    b16.batch_size = 1;
    const KnnGraph one = learned_graph(m, test.x, test.g, b16);
    double worst_fp32 = 0, worst_one = 0;
    for (int64_t i = 0; i < lb.n; ++i)
      for (int j = 0; j < 6; ++j) {
        const int32_t* row = lg.nbr_row(i);
        const int at = static_cast<int>(std::find(row, row + 6, lb.nbr_row(i)[j]) - row);
        ASSERT_LT(at, 6) << "row " << i;
        worst_fp32 = std::max(worst_fp32, double(std::abs(lb.dist_row(i)[j] - lg.dist_row(i)[at])));
        const int32_t* orow = one.nbr_row(i);
        const int oat = static_cast<int>(std::find(orow, orow + 6, lb.nbr_row(i)[j]) - orow);
        ASSERT_LT(oat, 6) << "row " << i;
        worst_one = std::max(worst_one, double(std::abs(lb.dist_row(i)[j] - one.dist_row(i)[oat])));
      }
    // bf16 keeps ~3 significant digits and its rounding depends on the block's shape (measured on
    // this toy: 0.021 from fp32, 0.014 from one anchor at a time); anchors mixed up between blocks
    // would be off by ~0.5 (two identities: distances near 0 or 1).
    EXPECT_LT(worst_fp32, 5e-2);
    EXPECT_LT(worst_one, 5e-2);
  }
}

TEST(Model, ResumeContinuesBitIdentically) {
  set_log_level(0);
  fctest::TempDir dir;
  Toy t = make_toy(100, 8, 6, 5);
  ModelSpec s = tiny_spec();
  s.dropout = 0.2;  // the random stream must be restored too
  TrainSplit tr{&t.x, &t.g, &t.labels};
  Config straight = tiny_config(dir.file("a"), 3);
  train_model(straight, s, tr, nullptr);
  Config first = tiny_config(dir.file("b"), 1);
  train_model(first, s, tr, nullptr);
  torch::manual_seed(999);  // disturb the global random state between the runs
  Config resumed = tiny_config(dir.file("b"), 3);
  resumed.reload = true;
  const auto logs = train_model(resumed, s, tr, nullptr);
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs.front().epoch, 2);
  const auto a = weights(checkpoint_path(straight.work_dir, 3)), b = weights(checkpoint_path(resumed.work_dir, 3));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // Without the saved state the continuation differs (the check above can fail).
  Config fresh = tiny_config(dir.file("c"), 2);
  fresh.start_epoch = 1;
  train_model(fresh, s, tr, nullptr);
  EXPECT_FALSE(torch::equal(weights(checkpoint_path(fresh.work_dir, 2))[0], weights(checkpoint_path(straight.work_dir, 2))[0]));
}

TEST(Model, CheckpointsOfAnotherModelOrTruncatedAreRefused) {
  set_log_level(0);
  fctest::TempDir dir;
  const std::string path = dir.file("m.fcmodel");
  PairModel::create(tiny_spec(8), 1).save_weights(path);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"m.fcmodel"}));  // no temporary left
  const ModelSpec other = tiny_spec(12);
  try {
    PairModel::load(path, &other);
    FAIL() << "a model for 8-d features loaded for 12-d ones";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in_dim 8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  ModelSpec layers = tiny_spec(8);
  layers.num_layers = 2;
  EXPECT_THROW(PairModel::load(path, &layers), Error);
  EXPECT_NO_THROW(PairModel::load(path, nullptr));
  // Truncated.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string cut = dir.file("cut.fcmodel");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    PairModel::load(cut);
    FAIL() << "a truncated checkpoint loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
  }
  // Not a checkpoint at all, and a missing file.
  std::ofstream(dir.file("text.fcmodel")) << "hello";
  EXPECT_THROW(PairModel::load(dir.file("text.fcmodel")), Error);
  EXPECT_THROW(PairModel::load(dir.file("missing.fcmodel")), Error);
  // A weights-only file cannot be resumed from.
  Toy t = make_toy(40, 8, 6, 1);
  TrainSplit tr{&t.x, &t.g, &t.labels};
  Config c = tiny_config(dir.file("w"), 2);
  std::filesystem::create_directories(c.work_dir);
  std::filesystem::copy_file(path, checkpoint_path(c.work_dir, 1));
  c.reload = true;
  EXPECT_THROW(train_model(c, tiny_spec(8), tr, nullptr), Error);
}

TEST(Model, TrainingRefusesMissingLabelsAndMismatchedData) {
  set_log_level(0);
  fctest::TempDir dir;
  Toy t = make_toy(40, 8, 6, 1);
  Labels none;
  Config c = tiny_config(dir.file("w"), 1);
  TrainSplit no_labels{&t.x, &t.g, &none};
  EXPECT_THROW(train_model(c, tiny_spec(8), no_labels, nullptr), Error);
  TrainSplit ok{&t.x, &t.g, &t.labels};
  EXPECT_THROW(train_model(c, tiny_spec(16), ok, nullptr), Error);  // features are 8-d
  EXPECT_THROW(train_model(c, tiny_spec(8, 10), ok, nullptr), Error);  // graph has k 6 < 10
}

// A toy whose lists mix both identities: every second slot from 3 on points across.
Toy mixed_toy(int64_t n, uint64_t seed) {
  Toy t = make_toy(n, 8, 6, seed);
  for (int64_t i = 0; i < t.g.n; ++i)
    for (int j = 3; j < 6; ++j) t.g.nbr_row(i)[j] = static_cast<int32_t>((i + 2 * j + 1) % t.g.n);
  return t;
}

TEST(Model, RotationAugmentedTrainingIsReproducible) {
  set_log_level(0);
  fctest::TempDir dir;
  Toy t = mixed_toy(160, 21);
  TrainSplit tr{&t.x, &t.g, &t.labels};
  Config a = tiny_config(dir.file("a"), 2), b = tiny_config(dir.file("b"), 2);
  a.augment_rotation = b.augment_rotation = true;
  const auto la = train_model(a, tiny_spec(), tr, nullptr);
  const auto lb = train_model(b, tiny_spec(), tr, nullptr);
  EXPECT_EQ(la.back().train.loss, lb.back().train.loss);  // same seed, same random rotations
  Config plain = tiny_config(dir.file("c"), 2);
  EXPECT_NE(train_model(plain, tiny_spec(), tr, nullptr).back().train.loss, la.back().train.loss);
}

TEST(Model, Bf16AutocastTrainingFollowsFp32AndIsRefusedUnderOtherNames) {
  set_log_level(0);
  fctest::TempDir dir;
  Toy t = mixed_toy(160, 23);
  TrainSplit tr{&t.x, &t.g, &t.labels};
  Config f = tiny_config(dir.file("f"), 4), b = tiny_config(dir.file("b"), 4);
  b.precision = "bf16";
  const auto lf = train_model(f, tiny_spec(), tr, nullptr);
  const auto lb = train_model(b, tiny_spec(), tr, nullptr);
  // The scope ends with the forward pass: nothing after training runs under autocast.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
#else
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
#endif
  if (model::bf16_is_fast()) {
    // bf16 products round to ~3 digits: the same descent, not the same numbers.
    EXPECT_NE(lf.back().train.loss, lb.back().train.loss);
    EXPECT_NEAR(lf.back().train.loss, lb.back().train.loss, 0.05 * lf.front().train.loss);
    EXPECT_LT(lb.back().train.loss, 0.9 * lb.front().train.loss);
  } else {
    EXPECT_EQ(lf.back().train.loss, lb.back().train.loss);  // fp32 with a warning on such CPUs
  }
  Config wrong = tiny_config(dir.file("w"), 1);
  wrong.precision = "fp16";
  EXPECT_THROW(train_model(wrong, tiny_spec(), tr, nullptr), Error);
}
