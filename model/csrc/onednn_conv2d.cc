// A oneDNN convolution for Paddle's dygraph on the CPU, with its gradient and its second-order gradient
// (R1 and the path-length penalty differentiate the gradient of the discriminator and the generator).
// y = conv(x, w) is bilinear, so every derivative is one of oneDNN's three convolutions:
//   forward            y  = F(x, w)
//   gradient           dx = D(dy, w)                        dw = W(x, dy)
//   second order       ddy = F(ddx, w) + F(x, ddw)          dx' = D(dy, ddw)      dw' = W(ddx, dy)
// (ddx, ddw: the gradients flowing into dx and dw; either may be absent). Registered as Paddle custom ops
// with C++ grad nodes, not PyLayers: Paddle's partial `paddle.grad` expects a PyLayer to return None for
// the inputs off the requested path without telling it which those are.
//
// Why: Paddle 3.3's dygraph CPU conv2d is a single-threaded im2col copy plus one GEMM and never picks its
// oneDNN kernels; oneDNN's direct convolution (what PyTorch and Paddle's own predictor run) is 2-4x faster
// on GPEN's layers. Tensors stay plain NCHW / OIHW float32 in Paddle; oneDNN may compute in a blocked
// layout it chooses, reordered in and out within the op.
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "paddle/extension.h"

namespace {

using dnnl::memory;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The shapes of one convolution: input (N, C, H, W), filter (O, C, KH, KW), output (N, O, OH, OW).
struct Geometry {
  memory::dims src, weights, dst, strides, pad_before, pad_after;

  Geometry(const std::vector<int64_t>& x, const std::vector<int64_t>& w, int64_t stride,
           const std::vector<int>& pads)  // pads: top, bottom, left, right
      : src(x.begin(), x.end()),
        weights(w.begin(), w.end()),
        strides{stride, stride},
        pad_before{pads[0], pads[2]},
        pad_after{pads[1], pads[3]} {
    dst = {x[0], w[0], (x[2] + pads[0] + pads[1] - w[2]) / stride + 1,
           (x[3] + pads[2] + pads[3] - w[3]) / stride + 1};
  }

  std::string key(char direction) const {
    std::string key(1, direction);
    for (const memory::dims* dims : {&src, &weights, &dst, &strides, &pad_before, &pad_after})
      for (int64_t v : *dims) key += "," + std::to_string(v);
    return key;
  }
};

memory::desc chosen_by_onednn(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, memory::format_tag::any);
}
memory::desc plain(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, memory::format_tag::abcd);
}

dnnl::convolution_forward::primitive_desc forward_desc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      chosen_by_onednn(g.src), chosen_by_onednn(g.weights), chosen_by_onednn(g.dst), g.strides,
      g.pad_before, g.pad_after);
}

// A primitive with the layouts it wants for its two inputs and its output, and the oneDNN argument ids.
struct Primitive {
  dnnl::primitive primitive;
  memory::desc in0, in1, out;
  int arg0, arg1, arg_out;
};

// Creating a primitive costs about a millisecond; a training step runs the same few shapes again and again.
Primitive cached(const std::string& key, Primitive (*make)(const Geometry&), const Geometry& g) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Primitive> primitives;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = primitives.find(key);
  if (found == primitives.end()) found = primitives.emplace(key, make(g)).first;
  return found->second;
}

Primitive make_forward(const Geometry& g) {
  auto pd = forward_desc(g);
  return {dnnl::convolution_forward(pd), pd.src_desc(), pd.weights_desc(), pd.dst_desc(),
          DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
}

Primitive make_backward_data(const Geometry& g) {
  dnnl::convolution_backward_data::primitive_desc pd(
      cpu_engine(), dnnl::algorithm::convolution_direct, chosen_by_onednn(g.src),
      chosen_by_onednn(g.weights), chosen_by_onednn(g.dst), g.strides, g.pad_before, g.pad_after,
      forward_desc(g));
  return {dnnl::convolution_backward_data(pd), pd.diff_dst_desc(), pd.weights_desc(), pd.diff_src_desc(),
          DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
}

Primitive make_backward_weights(const Geometry& g) {
  dnnl::convolution_backward_weights::primitive_desc pd(
      cpu_engine(), dnnl::algorithm::convolution_direct, chosen_by_onednn(g.src),
      chosen_by_onednn(g.weights), chosen_by_onednn(g.dst), g.strides, g.pad_before, g.pad_after,
      forward_desc(g));
  return {dnnl::convolution_backward_weights(pd), pd.src_desc(), pd.diff_dst_desc(),
          pd.diff_weights_desc(), DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
}

void check_input(const paddle::Tensor& t, const char* what) {
  PD_CHECK(t.is_cpu(), "onednn_conv2d: ", what, " must be on the CPU");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "onednn_conv2d: ", what, " must be float32");
  PD_CHECK(t.shape().size() == 4, "onednn_conv2d: ", what, " must be 4-D");
}

// Runs the primitive on plain Paddle tensors, reordering to and from the layouts it chose.
paddle::Tensor execute(const Primitive& p, const paddle::Tensor& in0, const memory::dims& dims0,
                       const paddle::Tensor& in1, const memory::dims& dims1, const memory::dims& dims_out) {
  paddle::Tensor a = in0.is_contiguous() ? in0 : in0.contiguous();
  paddle::Tensor b = in1.is_contiguous() ? in1 : in1.contiguous();
  paddle::Tensor result = paddle::empty(dims_out, paddle::DataType::FLOAT32, in0.place());
  dnnl::engine& engine = cpu_engine();
  dnnl::stream stream(engine);
  auto as_wanted = [&](const memory::desc& wanted, const memory::dims& dims, const paddle::Tensor& t) {
    memory user(plain(dims), engine, const_cast<float*>(t.data<float>()));
    if (wanted == user.get_desc()) return user;
    memory reordered(wanted, engine);
    dnnl::reorder(user, reordered).execute(stream, user, reordered);
    return reordered;
  };
  memory m0 = as_wanted(p.in0, dims0, a);
  memory m1 = as_wanted(p.in1, dims1, b);
  memory user_out(plain(dims_out), engine, result.data<float>());
  memory out = p.out == user_out.get_desc() ? user_out : memory(p.out, engine);
  p.primitive.execute(stream, {{p.arg0, m0}, {p.arg1, m1}, {p.arg_out, out}});
  if (out != user_out) dnnl::reorder(out, user_out).execute(stream, out, user_out);
  stream.wait();
  return result;
}


paddle::Tensor forward(const paddle::Tensor& x, const paddle::Tensor& w, int stride,
                       const std::vector<int>& pads) {
  Geometry g(x.shape(), w.shape(), stride, pads);
  return execute(cached(g.key('f'), make_forward, g), x, g.src, w, g.weights, g.dst);
}

paddle::Tensor backward_data(const paddle::Tensor& dy, const paddle::Tensor& w, const paddle::Tensor& x,
                             int stride, const std::vector<int>& pads) {
  Geometry g(x.shape(), w.shape(), stride, pads);
  return execute(cached(g.key('d'), make_backward_data, g), dy, g.dst, w, g.weights, g.src);
}

paddle::Tensor backward_weights(const paddle::Tensor& x, const paddle::Tensor& dy, const paddle::Tensor& w,
                                int stride, const std::vector<int>& pads) {
  Geometry g(x.shape(), w.shape(), stride, pads);
  return execute(cached(g.key('w'), make_backward_weights, g), x, g.src, dy, g.dst, g.weights);
}

bool present(const paddle::optional<paddle::Tensor>& t) { return t && t->initialized(); }

}  // namespace

// `needs`: which gradients the caller can use, known when the op runs forward (bit 1: the input's, bit 2:
// the filter's; a stop_gradient tensor needs none, e.g. the discriminator's filters during the G step).
// Paddle's custom grad node asks for both; an unneeded one is left unfilled (Paddle drops it).
constexpr int kInputGradient = 1, kFilterGradient = 2;

std::vector<paddle::Tensor> Forward(const paddle::Tensor& x, const paddle::Tensor& w, int stride,
                                    const std::vector<int>& pads, int needs) {
  check_input(x, "the input");
  check_input(w, "the filter");
  return {forward(x, w, stride, pads)};
}

std::vector<paddle::Tensor> Backward(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor& dy,
                                     int stride, const std::vector<int>& pads, int needs) {
  check_input(dy, "the output gradient");
  return {needs & kInputGradient ? backward_data(dy, w, x, stride, pads)
                                 : paddle::empty(x.shape(), paddle::DataType::FLOAT32, x.place()),
          needs & kFilterGradient ? backward_weights(x, dy, w, stride, pads)
                                  : paddle::empty(w.shape(), paddle::DataType::FLOAT32, w.place())};
}

std::vector<paddle::Tensor> DoubleBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                           const paddle::Tensor& dy,
                                           const paddle::optional<paddle::Tensor>& ddx,
                                           const paddle::optional<paddle::Tensor>& ddw, int stride,
                                           const std::vector<int>& pads, int needs) {
  paddle::Tensor new_dx, new_dw, ddy;
  if (present(ddw)) {
    new_dx = backward_data(dy, *ddw, x, stride, pads);
    ddy = forward(x, *ddw, stride, pads);
  } else {
    new_dx = paddle::full(x.shape(), 0.0f, paddle::DataType::FLOAT32, x.place());
  }
  if (present(ddx)) {
    new_dw = backward_weights(*ddx, dy, w, stride, pads);
    paddle::Tensor from_ddx = forward(*ddx, w, stride, pads);
    ddy = ddy.initialized() ? paddle::experimental::add(ddy, from_ddx) : from_ddx;
  } else {
    new_dw = paddle::full(w.shape(), 0.0f, paddle::DataType::FLOAT32, w.place());
  }
  if (!ddy.initialized()) ddy = paddle::full(dy.shape(), 0.0f, paddle::DataType::FLOAT32, dy.place());
  return {new_dx, new_dw, ddy};
}

PD_BUILD_OP(gpen_onednn_conv2d)
    .Inputs({"X", "W"})
    .Outputs({"Out"})
    .Attrs({"stride: int", "pads: std::vector<int>", "needs: int"})
    .SetKernelFn(PD_KERNEL(Forward));

PD_BUILD_GRAD_OP(gpen_onednn_conv2d)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .Attrs({"stride: int", "pads: std::vector<int>", "needs: int"})
    .SetKernelFn(PD_KERNEL(Backward));

PD_BUILD_DOUBLE_GRAD_OP(gpen_onednn_conv2d)
    .Inputs({"X", "W", paddle::Grad("Out"), paddle::Optional(paddle::Grad(paddle::Grad("X"))),
             paddle::Optional(paddle::Grad(paddle::Grad("W")))})
    .Outputs({paddle::New(paddle::Grad("X")), paddle::New(paddle::Grad("W")), paddle::Grad(paddle::Grad("Out"))})
    .Attrs({"stride: int", "pads: std::vector<int>", "needs: int"})
    .SetKernelFn(PD_KERNEL(DoubleBackward));
